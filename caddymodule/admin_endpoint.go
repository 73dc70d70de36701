package caddymodule

import (
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// adminEndpoint is a configuration's admin API as an operator on the same host reaches it: the
// dashboard writes its unban commands for it.
type adminEndpoint struct {
	// name is the endpoint as the dashboard shows it: "off" when the configuration turns the
	// admin API off, else its address as Caddy names it (localhost:2019, 127.0.0.1:2999,
	// unix//run/caddy/admin.sock, fd/3); "" when it could not be read.
	name string
	// curl is what follows `curl -X DELETE ` up to the URL's path: the options and the scheme
	// and host ("--unix-socket /run/caddy/admin.sock http://localhost"); "" when curl cannot
	// reach the endpoint (off, a file descriptor, not read).
	curl string
}

// unban is the command that lifts the detection of client (an address or a /64), or "" when
// there is none. The operator pastes it into a shell, so a client that is neither (a row
// another instance published through Redis, whose content this instance did not make) gets
// none.
func (a adminEndpoint) unban(client string) string {
	if a.curl == "" || !isClientName(client) {
		return ""
	}
	return "curl -X DELETE " + a.curl + ipClassAdminPrefix + "detected/" + client
}

// isClientName reports whether s names a client as the detector does: an address without a
// zone, or a network.
func isClientName(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Zone() == ""
	}
	_, err := netip.ParsePrefix(s)
	return err == nil
}

// configuredAdmin is the admin endpoint of the configuration ctx belongs to.
func configuredAdmin(ctx caddy.Context) adminEndpoint {
	admin, ok := configAdmin(ctx)
	if !ok {
		return adminEndpoint{}
	}
	return adminEndpointOf(admin)
}

// configAdmin reads the `admin` settings of ctx's configuration (nil: Caddy's defaults): the
// four the command depends on. ok is false when the configuration cannot be read
// (contextConfig).
func configAdmin(ctx caddy.Context) (admin *caddy.AdminConfig, ok bool) {
	cfg, ok := contextConfig(ctx)
	if !ok {
		return nil, false
	}
	a := cfg.FieldByName("Admin")
	if a.IsNil() {
		return nil, true
	}
	a = a.Elem()
	admin = &caddy.AdminConfig{Disabled: a.FieldByName("Disabled").Bool(), Listen: a.FieldByName("Listen").String(),
		EnforceOrigin: a.FieldByName("EnforceOrigin").Bool()}
	if o := a.FieldByName("Origins"); !o.IsNil() {
		admin.Origins = make([]string, o.Len())
		for i := range admin.Origins {
			admin.Origins[i] = o.Index(i).String()
		}
	}
	return admin, true
}

// adminEndpointOf reads the endpoint as Caddy does when it starts it: the listen address (its
// placeholders replaced; CADDY_ADMIN or localhost:2019 when unset), and the Host and Origin
// headers the endpoint accepts (`origins`, `enforce_origin`).
func adminEndpointOf(admin *caddy.AdminConfig) adminEndpoint {
	if admin == nil {
		admin = &caddy.AdminConfig{}
	}
	if admin.Disabled {
		return adminEndpoint{name: "off"}
	}
	listen, err := caddy.NewReplacer().ReplaceOrErr(admin.Listen, true, true)
	if err != nil {
		return adminEndpoint{}
	}
	if listen == "" {
		listen = caddy.DefaultAdminListen
	}
	addr, err := caddy.ParseNetworkAddress(listen)
	if err != nil || addr.PortRangeSize() != 1 {
		return adminEndpoint{}
	}
	// The first of `origins` is one the endpoint allows, for the Host and Origin headers.
	var origin, originHost string
	if len(admin.Origins) > 0 {
		scheme, host := originParts(admin.Origins[0])
		origin, originHost = scheme+"://"+host, host
	}
	switch {
	case addr.IsUnixNetwork():
		path, _, _ := strings.Cut(addr.Host, "|") // the socket's permission bits
		e := adminEndpoint{name: "unix/" + path, curl: "--unix-socket " + shellQuote(path) + " http://localhost"}
		if admin.EnforceOrigin && origin != "" {
			e.curl = "-H " + shellQuote("Origin: "+origin) + " " + e.curl
		}
		return e
	case addr.IsFdNetwork():
		return adminEndpoint{name: addr.String()}
	}
	host := addr.Host
	ip, err := netip.ParseAddr(host)
	wildcard := host == "" || err == nil && ip.IsUnspecified()
	if wildcard {
		host = "localhost" // Caddy checks no Host on a wildcard address
	}
	hostport := net.JoinHostPort(host, strconv.FormatUint(uint64(addr.StartPort), 10))
	e := adminEndpoint{name: net.JoinHostPort(addr.Host, strconv.FormatUint(uint64(addr.StartPort), 10))}
	var headers []string
	if origin == "" {
		origin = "http://" + hostport
	} else if !wildcard && !allowsHost(admin.Origins, hostport) {
		headers = append(headers, "Host: "+originHost)
	}
	if admin.EnforceOrigin {
		headers = append(headers, "Origin: "+origin)
	}
	for _, h := range headers {
		e.curl += "-H " + shellQuote(h) + " "
	}
	e.curl += "http://" + hostport
	return e
}

// allowsHost reports whether origins, as Caddy reads `origins`, hold hostport.
func allowsHost(origins []string, hostport string) bool {
	for _, o := range origins {
		if _, host := originParts(o); strings.EqualFold(host, hostport) {
			return true
		}
	}
	return false
}

// originParts splits one of `origins` as Caddy reads it: a URL when it holds "://", else a
// host (scheme http).
func originParts(o string) (scheme, host string) {
	if u, err := url.Parse(o); err == nil && strings.Contains(o, "://") {
		return u.Scheme, u.Host
	}
	return "http", o
}

// shellSafe are the words a POSIX shell reads as they are.
var shellSafe = regexp.MustCompile(`^[A-Za-z0-9@%+=:,./_-]+$`)

// shellQuote makes s one shell word.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
