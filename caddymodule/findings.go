package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Severity ranks a configuration finding.
type Severity string

// Info explains a consequence; Warning is a risk to fix; Error refuses the configuration.
const (
	Info    Severity = "info"
	Warning Severity = "warning"
	Error   Severity = "error"
)

// Finding is one result of configuration validation, contributed by a module at provision.
type Finding struct {
	Code     string   `json:"code"`     // stable identifier, e.g. "redis.literal_password"
	Severity Severity `json:"severity"` // info, warning or error
	Module   string   `json:"module"`   // Caddy module ID that found it
	Config   string   `json:"config"`   // where in the JSON config, e.g. "apps.hardening.redis.password"; null in JSON when nowhere
	Message  string   `json:"message"`  // what is wrong and why it matters
	Fix      string   `json:"fix"`      // how to fix it
}

// MarshalJSON writes every key of every finding, so that a consumer of `check --json` sees
// one shape: `config` is null for a finding with no place in the JSON config (a file its
// adapter refuses, JSON that does not decode).
func (f Finding) MarshalJSON() ([]byte, error) {
	var at *string
	if f.Config != "" {
		at = &f.Config
	}
	return json.Marshal(struct {
		Code     string   `json:"code"`
		Severity Severity `json:"severity"`
		Module   string   `json:"module"`
		Config   *string  `json:"config"`
		Message  string   `json:"message"`
		Fix      string   `json:"fix"`
	}{f.Code, f.Severity, f.Module, at, f.Message, f.Fix})
}

func (f Finding) Error() string {
	return fmt.Sprintf("%s [%s]: %s; fix: %s", f.Module, f.Code, f.Message, f.Fix)
}

// findingSet collects a configuration's findings, once each.
type findingSet struct {
	mu     sync.Mutex
	list   []Finding
	seen   map[Finding]bool
	causes map[string]bool
	lint   bool // under `caddy hardening check`: an Error finding refuses nothing
}

// add records f, ignoring exact repeats (two handlers with the same finding) and repeats of
// one cause: cause (when not empty) names what the finding is about apart from where it sits
// in the JSON (findingCause), so that a handler the Caddyfile adapter copied into several
// servers (a site block with an https and an http:// address) is reported once, at its first
// place. An Error finding is also returned as an error for the reporting module's Provision
// to return, except under a check, which lists it with every other finding.
func (s *findingSet) add(f Finding, cause string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen, s.causes = map[Finding]bool{}, map[string]bool{}
	}
	repeat := cause != "" && s.causes[cause]
	if !s.seen[f] && !repeat {
		s.seen[f] = true
		s.list = append(s.list, f)
	}
	if cause != "" {
		s.causes[cause] = true
	}
	if f.Severity == Error && !s.lint {
		return errors.New(f.Error())
	}
	return nil
}

func (s *findingSet) all() []Finding {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Finding(nil), s.list...)
}

// findingCause names the cause of a finding reported at a handler (its Config is under
// apps.http.servers): the finding's code, message and fix, the handler's JSON and the setting
// below it; empty for other findings, or when the handler is not found. The server and the
// routes around the handler are left out: the Caddyfile adapter puts a site block with
// addresses on two ports (localhost:8443, http://localhost:8080) into two servers, each with
// its own copy of the handler, and the check listed each finding once per copy.
func findingCause(ctx caddy.Context, f Finding) string {
	rest, ok := strings.CutPrefix(f.Config, "apps.http.servers.")
	if !ok {
		return ""
	}
	name, rest, ok := strings.Cut(rest, ".routes.")
	if !ok {
		return ""
	}
	var srv *caddyhttp.Server
	for n, s := range httpServers(ctx) {
		if n == name {
			srv = s
		}
	}
	if srv == nil {
		return ""
	}
	routes, parts := srv.Routes, strings.Split(rest, ".")
	var h caddyhttp.MiddlewareHandler
	for len(parts) >= 3 && parts[1] == "handle" {
		i, err1 := strconv.Atoi(parts[0])
		j, err2 := strconv.Atoi(parts[2])
		if err1 != nil || err2 != nil || i >= len(routes) || j >= len(routes[i].Handlers) {
			return ""
		}
		h, parts = routes[i].Handlers[j], parts[3:]
		sub, isSub := h.(*caddyhttp.Subroute)
		if !isSub || len(parts) == 0 || parts[0] != "routes" {
			break
		}
		routes, parts = sub.Routes, parts[1:]
	}
	if h == nil {
		return ""
	}
	b, err := json.Marshal(h)
	if err != nil {
		return ""
	}
	return strings.Join([]string{f.Code, f.Message, f.Fix, fmt.Sprintf("%T", h), string(b), strings.Join(parts, ".")}, "\x00")
}

// log writes each warning at WARN and each info at INFO, once.
func (s *findingSet) log(logger *zap.Logger) {
	for _, f := range s.all() {
		fields := []zap.Field{zap.String("code", f.Code), zap.String("module", f.Module),
			zap.String("config", f.Config), zap.String("fix", f.Fix)}
		switch f.Severity {
		case Warning:
			logger.Warn(f.Message, fields...)
		case Info:
			logger.Info(f.Message, fields...)
		}
	}
}

// httpServers yields the configuration's HTTP servers by name, in name order (so findings
// come in a stable order); none when there is no http app.
func httpServers(ctx caddy.Context) iter.Seq2[string, *caddyhttp.Server] {
	return func(yield func(string, *caddyhttp.Server) bool) {
		v, err := ctx.AppIfConfigured("http")
		if err != nil {
			return
		}
		servers := v.(*caddyhttp.App).Servers
		for _, name := range sortedKeys(servers) {
			if !yield(name, servers[name]) {
				return
			}
		}
	}
}
