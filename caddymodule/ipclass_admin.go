package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap/zapcore"

	"github.com/swarmsec/caddy-hardening/ipclass"
)

func init() {
	caddy.RegisterModule(ipClassAdmin{})
}

// ipClassAdmin serves the operator's view of the IP classes on Caddy's admin endpoint:
//
//	GET    /hardening/ipclass/                  counts, settings and detected clients (?limit=, default 1000)
//	GET    /hardening/ipclass/class/<ip>        the class of one address
//	POST   /hardening/ipclass/detected          {"ip": "...", "ban_for": "1h"}: make a client suspicious
//	DELETE /hardening/ipclass/detected/<ip>     unban a detected client
//
// Bans and unbans reach every instance when Redis is configured; an unban published while an
// instance was cut off from Redis does not reach it (reading the shared set only adds).
// Static lists change only with the configuration.
type ipClassAdmin struct{}

// CaddyModule returns the Caddy module information.
func (ipClassAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.hardening_ipclass",
		New: func() caddy.Module { return new(ipClassAdmin) },
	}
}

const ipClassAdminPrefix = "/hardening/ipclass/"

// Routes returns the admin routes.
func (ipClassAdmin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: ipClassAdminPrefix, Handler: caddy.AdminHandlerFunc(serveIPClassAdmin)}}
}

// maxAdminBody bounds a POST body.
const maxAdminBody = 4096

func serveIPClassAdmin(w http.ResponseWriter, r *http.Request) error {
	app, err := activeHardeningApp()
	if err != nil {
		return err
	}
	rest := strings.TrimPrefix(r.URL.Path, ipClassAdminPrefix)
	switch {
	case rest == "" && r.Method == http.MethodGet:
		return app.adminSummary(w, r)
	case strings.HasPrefix(rest, "class/") && r.Method == http.MethodGet:
		addr, err := app.adminAddr(strings.TrimPrefix(rest, "class/"))
		if err != nil {
			return err
		}
		return writeAdminJSON(w, http.StatusOK, map[string]string{"ip": addr.String(), "class": app.classOfAddr(addr).String()})
	case rest == "detected" && r.Method == http.MethodPost:
		return app.adminBan(w, r)
	case strings.HasPrefix(rest, "detected/") && r.Method == http.MethodDelete:
		if p, ok := app.adminNetwork(strings.TrimPrefix(rest, "detected/")); ok {
			return app.adminUnbanNetwork(w, p)
		}
		addr, err := app.adminAddr(strings.TrimPrefix(rest, "detected/"))
		if err != nil {
			return err
		}
		return app.adminUnban(w, addr)
	}
	return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("%s %s: expected GET %s, GET %sclass/<ip>, POST %sdetected or DELETE %sdetected/<ip>",
		r.Method, r.URL.Path, ipClassAdminPrefix, ipClassAdminPrefix, ipClassAdminPrefix, ipClassAdminPrefix)}
}

func activeHardeningApp() (*App, error) {
	v, err := caddy.ActiveContext().AppIfConfigured("hardening")
	if err != nil || v == nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: errors.New("no hardening app is running")}
	}
	return v.(*App), nil
}

// adminAddr reads an address, or an IPv6 network as the listings name a client
// (2001:db8:1:2::/64): the detector knows a client by its network's first address. Only a
// network of the detection's ipv6_prefix is a client: another length (a /48 from an abuse
// report) or host bits would silently name a different /64, so they are refused.
func (a *App) adminAddr(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is6() && !p.Addr().Is4In6() {
		bits := ipclass.DefaultIPv6Prefix
		if det := a.detector(); det != nil {
			bits = det.IPv6Prefix()
		}
		if p.Bits() != bits || p.Masked() != p {
			also := ""
			if det := a.detector(); det != nil && det.EscalatePrefix() > 0 {
				also = fmt.Sprintf(" (or of its ipv6_escalate, /%d, to ban or unban a wider network)", det.EscalatePrefix())
			}
			return netip.Addr{}, caddy.APIError{HTTPStatus: http.StatusBadRequest,
				Err: fmt.Errorf("%q: expected an address or an IPv6 network of the detection's ipv6_prefix, /%d, such as %s%s", s, bits, netip.PrefixFrom(p.Addr(), bits).Masked(), also)}
		}
		return p.Addr(), nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("%q is not an IP address", s)}
	}
	return addr.WithZone("").Unmap(), nil
}

// adminNetwork reads a wider IPv6 network as escalations name it (2001:db8:1::/48, of the
// detection's ipv6_escalate bits, without host bits).
func (a *App) adminNetwork(s string) (netip.Prefix, bool) {
	det := a.detector()
	p, err := netip.ParsePrefix(s)
	if det == nil || err != nil || !p.Addr().Is6() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
		return netip.Prefix{}, false
	}
	return p, det.EscalatePrefix() > 0 && p.Bits() == det.EscalatePrefix() && p.Masked() == p
}

func (a *App) detector() *ipclass.Detector {
	if a.classifier == nil {
		return nil
	}
	return a.classifier.Detector
}

func (a *App) classOfAddr(addr netip.Addr) ipclass.Class {
	if a.classifier == nil {
		return ipclass.Default
	}
	return a.classifier.Class(addr)
}

type adminDetection struct {
	IP     string    `json:"ip"`
	Signal string    `json:"signal"`
	Score  float64   `json:"score"`
	Until  time.Time `json:"until"`
	Shadow bool      `json:"shadow,omitempty"`
	// Warning: the ban applies, but what it covers deserves a second look (a loopback client).
	Warning string `json:"warning,omitempty"`
}

func (a *App) adminSummary(w http.ResponseWriter, r *http.Request) error {
	limit := 1000
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100_000 {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("limit: expected 1 to 100000")}
		}
		limit = n
	}
	out := map[string]any{
		"static": map[string]int{"trusted": a.classifier.Trusted.Len(), "suspicious": a.classifier.Suspicious.Len()},
	}
	if det := a.detector(); det != nil {
		tracked, detected := det.Counts()
		list := []adminDetection{}
		// The latest ends of all, not the first `limit` the maps give sorted among themselves.
		top, _ := det.TopDetections(limit, func(a, b ipclass.Detection) bool { return a.Until.After(b.Until) })
		for _, d := range top {
			list = append(list, adminDetection{IP: det.DetectionString(d), Signal: d.Signal.String(), Score: d.Score, Until: d.Until.UTC(), Shadow: d.Shadow})
		}
		out["detection"] = map[string]any{"shadow": det.Shadow(), "tracked": tracked, "suspicious": detected, "shared": a.sharedBans != nil}
		out["detected"] = list
	}
	return writeAdminJSON(w, http.StatusOK, out)
}

func (a *App) adminBan(w http.ResponseWriter, r *http.Request) error {
	det := a.detector()
	if det == nil {
		return caddy.APIError{HTTPStatus: http.StatusConflict, Err: errors.New("detection is off (feature detection)")}
	}
	var req struct {
		IP     string `json:"ip"`
		BanFor string `json:"ban_for"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAdminBody+1))
	if err != nil || len(body) > maxAdminBody || json.Unmarshal(body, &req) != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`expected a JSON body {"ip": "192.0.2.1", "ban_for": "1h"} of at most 4 KiB`)}
	}
	// A misspelt field ("banfor") would otherwise ban for the default ban_for, silently.
	strict := json.NewDecoder(bytes.NewReader(body))
	strict.DisallowUnknownFields()
	if err := strict.Decode(&req); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf(`%v: the body takes only "ip" and "ban_for"`, err)}
	}
	network, isNetwork := a.adminNetwork(req.IP)
	var addr netip.Addr
	if isNetwork {
		addr = network.Addr()
	} else if addr, err = a.adminAddr(req.IP); err != nil {
		return err
	}
	if addr.IsUnspecified() {
		// No client has it, and an IPv6 ban covers its network: "::" banned ::/64, and with it
		// ::1, the host's own loopback.
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("%q is the unspecified address, no client's: expected a client's address", req.IP)}
	}
	banFor := ipclass.DefaultBanFor
	if a.Detection != nil && a.Detection.BanFor > 0 {
		banFor = time.Duration(a.Detection.BanFor)
	}
	if req.BanFor != "" {
		// The config's bounds: 1s (detections end in steps of a second) to 10 years.
		if banFor, err = caddy.ParseDuration(req.BanFor); err != nil || banFor < time.Second || checkBanForMax(banFor) != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("ban_for %q: expected a duration from 1s to 10 years (3650d), such as 1h", req.BanFor)}
		}
	}
	if a.classifier.Trusted.Contains(addr) {
		return caddy.APIError{HTTPStatus: http.StatusConflict, Err: fmt.Errorf("%s is in a trusted prefix: trusted clients are never reclassified", addr)}
	}
	// A ban in effect that ends later is kept (a ban never shortens one: unban first): answer,
	// log and share the end that applies, not the one asked for.
	banned := ipclass.Detection{Addr: det.Client(addr), Signal: ipclass.SignalManual}
	if isNetwork {
		banned.Addr, banned.Bits = network.Addr(), network.Bits()
		banned.Until, _ = det.BanNetwork(network, time.Now().Add(banFor), ipclass.SignalManual)
	} else {
		banned.Until = det.Ban(addr, time.Now().Add(banFor), ipclass.SignalManual)
	}
	until := banned.Until
	if a.sharedBans != nil {
		a.sharedBans.Publish(banned)
	}
	client := det.DetectionString(banned) // an IPv6 client is its network
	shadow := det.Shadow()                // kept, applied once shadow mode is off
	level := zapcore.WarnLevel
	if shadow {
		level = zapcore.InfoLevel // as a detection in shadow mode: nothing is refused yet
	}
	fields := map[string]any{
		"ip": client, "to": ipclass.Suspicious.String(), "signal": ipclass.SignalManual.String(),
		"until": until.UTC().Format(time.RFC3339), "source": "admin_api", "shadow": shadow}
	answer := adminDetection{IP: client, Signal: ipclass.SignalManual.String(), Until: until.UTC(), Shadow: shadow}
	if isNetwork && network.Contains(netip.IPv6Loopback()) || !isNetwork && ipclass.HoldsLoopback(det.Client(addr), det.IPv6Prefix()) {
		// Accepted as the detector would detect it (a loopback client can be a local test, or
		// a local proxy's clients seen without trusted_proxies), but said: it refuses this
		// host's own health checks and curl, and other instances never get it.
		answer.Warning = client + " holds a loopback address (127.0.0.0/8, ::1), this host's own: its health checks, your curl and, without trusted_proxies, every client of a local proxy are refused until the ban ends or is deleted; it is not shared with other instances"
		fields["warning"] = answer.Warning
	}
	a.SecurityEvent(a.eventCtx, nil, level, EventIPReclassified, fields)
	return writeAdminJSON(w, http.StatusCreated, answer)
}

func (a *App) adminUnban(w http.ResponseWriter, addr netip.Addr) error {
	det := a.detector()
	if det == nil {
		return caddy.APIError{HTTPStatus: http.StatusConflict, Err: errors.New("detection is off (feature detection)")}
	}
	was := det.Unban(addr)
	if a.sharedBans != nil {
		a.sharedBans.PublishUnban(det.Client(addr)) // another instance may hold it even if this one does not
	}
	client := det.ClientString(addr)
	a.SecurityEvent(a.eventCtx, nil, zapcore.InfoLevel, EventIPReclassified, map[string]any{
		"ip": client, "to": a.classOfAddr(addr).String(), "signal": ipclass.SignalManual.String(),
		"was_detected": was, "source": "admin_api"})
	return writeAdminJSON(w, http.StatusOK, map[string]any{"ip": client, "was_detected": was, "class": a.classOfAddr(addr).String()})
}

// adminUnbanNetwork lifts a wider network's detection (and its count of detected clients).
// Its clients' own detections stay: unban them one by one.
func (a *App) adminUnbanNetwork(w http.ResponseWriter, p netip.Prefix) error {
	det := a.detector()
	was := det.UnbanNetwork(p)
	if a.sharedBans != nil {
		a.sharedBans.PublishUnbanNetwork(p)
	}
	a.SecurityEvent(a.eventCtx, nil, zapcore.InfoLevel, EventIPReclassified, map[string]any{
		"ip": p.String(), "to": a.classOfAddr(p.Addr()).String(), "signal": ipclass.SignalManual.String(),
		"was_detected": was, "source": "admin_api"})
	return writeAdminJSON(w, http.StatusOK, map[string]any{"ip": p.String(), "was_detected": was, "class": a.classOfAddr(p.Addr()).String()})
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// Interface guard.
var _ caddy.AdminRouter = ipClassAdmin{}
