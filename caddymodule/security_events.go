package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/swarmsec/caddy-hardening/internal/eventbudget"
	"github.com/swarmsec/caddy-hardening/internal/textcut"
)

// securityLoggerName is the logger of every security event, whichever module reports it, so an
// operator routes them all with one line: `log security { include hardening.security ... }`.
// It is the hardening app's own logger (named after its module ID) with this sub-name.
const securityLoggerName = "hardening.security"

// The security events. Each is written to the security log and emitted as a Caddy event of the
// same name (subscribe with the `events` app) with the same data.
const (
	EventIPReclassified      = "ip_reclassified"
	EventPathBlocked         = "path_blocked"
	EventSuspiciousBlocked   = "suspicious_blocked"
	EventRateLimited         = "rate_limit_exceeded"
	EventStoreFailover       = "store_failover"
	EventCSPViolation        = "csp_violation"
	EventBreakerStateChanged = "breaker_state_changed"
	EventMonitoringDenied    = "monitoring_access_denied"
)

// maxLoggedURI bounds the request URI copied into an event: an attacker chooses its length.
const maxLoggedURI = 512

// maxLoggedHost bounds the Host copied into an event: an attacker chooses it too (a site
// without a host matcher takes any), and only the server's header limit bounds it. A host
// name is at most 253 bytes, with ":65535" 259: no real one is cut.
const maxLoggedHost = 260

// eventLogRate is how many events of one name are logged per second (with a burst of as many);
// the rest are counted and the next logged one carries `suppressed`. Caddy events are always
// emitted: subscribers decide for themselves.
const eventLogRate = 100

// eventLogPerClient is how many events of one name one client (an address; an IPv6 /64) has
// logged per second out of the name's budget in any case; beyond it, its events are logged
// only while more than half the budget is left. One client flooding an event (forged CSP
// reports, 100 to a request) thus gets about half of it, not all of it, and the same event of
// other clients is still logged (eventLogPerClient each); a single client's burst (a scanner's
// probes) is logged in full up to about half the budget. Events no request caused have no
// client and only the name's budget.
const eventLogPerClient = 10

// securityEvents writes security events with one field schema:
//
//	event      the event name (ip_reclassified, path_blocked, ...)
//	module     the Caddy module that reported it (http.handlers.path_guard, ...)
//	client_ip  Caddy's client IP (trusted_proxies respected), when a request caused it
//	ip_class   the client's class at that time
//	method, host (at most 260 bytes), uri (truncated to 512 bytes; bytes that are not UTF-8 as %XX)
//	...        event-specific fields (reason, score, policy, directive, breaker, state, ...)
//	suppressed how many events of this name were not logged since the last logged one
type securityEvents struct {
	logger *zap.Logger
	events *caddyevents.App

	// budget is eventLogRate a second per name, one client's share bounded.
	budget *eventbudget.Budget
}

// newEventLogBudget is the security log's budget: eventLogRate events a second per name,
// eventLogPerClient of them for one client in any case.
func newEventLogBudget() *eventbudget.Budget {
	return &eventbudget.Budget{Rate: eventLogRate, Burst: eventLogRate, PerClient: eventLogPerClient}
}

// newSecurityEvents takes its logger from the config's logging as the hardening app's module
// logger, not from caddy.Log(): only a module logger (Logging.Logger) carries the custom logs
// that include or exclude its name; caddy.Log() writes to the default log alone, which the
// Caddyfile's `log security { include hardening.security }` makes exclude these events. Every
// module's events go through this one logger, so all of them are named hardening.security.
func newSecurityEvents(ctx caddy.Context) (*securityEvents, error) {
	ev, err := ctx.App("events")
	if err != nil {
		return nil, err
	}
	return &securityEvents{
		logger: ctx.Logger(new(App)).Named("security"), // "hardening" (the module ID) + ".security"
		events: ev.(*caddyevents.App),
		budget: newEventLogBudget(),
	}, nil
}

// eventContext returns the context a module provisioned with ctx reports its events with
// later (from a request or a timer): its Module() is, and stays, a module with the
// provisioned module's ID, which names the event's `module` and its Caddy event origin.
//
// The ctx Provision gets cannot be kept for that. Caddy appends each module it loads to the
// parent's module lineage (context.go: `ctx.ancestry = append(ctx.ancestry, val)`), and the
// siblings loaded from one parent (the handlers of a route, the routes of a list) append to
// the same backing array when it has room: the next sibling overwrites the slot the saved
// context's Module() reads, so a breaker followed by reverse_proxy would report as
// reverse_proxy. The context returned here starts a lineage of its own (caddy.NewContext:
// empty, so the first append allocates) holding only an eventOrigin with the module's ID. It
// is derived from ctx, so it ends with the config; its metrics registry is not the config's
// (keep using ctx for metrics).
func eventContext(ctx caddy.Context) caddy.Context {
	mod := ctx.Module()
	if mod == nil {
		return ctx
	}
	own, _ := caddy.NewContext(ctx) // cancelled with ctx's config
	raw, err := json.Marshal(eventOrigin{ID: mod.CaddyModule().ID})
	if err != nil {
		return ctx
	}
	v, err := own.LoadModuleByID(eventOriginID, raw)
	if err != nil {
		return ctx
	}
	return v.(*eventOrigin).ctx
}

// eventOriginID is the module ID eventOrigin is registered under; as loaded, it reports the
// ID of the module it stands for.
const eventOriginID = "hardening.internal.event_origin"

func init() { caddy.RegisterModule(new(eventOrigin)) }

// eventOrigin stands for a module as the origin of its events (see eventContext). Internal: no
// configuration loads it.
type eventOrigin struct {
	ID  caddy.ModuleID `json:"id"`
	ctx caddy.Context
}

// CaddyModule returns the ID of the module this stands for (eventOriginID when registering).
func (o *eventOrigin) CaddyModule() caddy.ModuleInfo {
	id := o.ID
	if id == "" {
		id = eventOriginID
	}
	return caddy.ModuleInfo{ID: id, New: func() caddy.Module { return new(eventOrigin) }}
}

// Provision keeps the context whose lineage ends with this module.
func (o *eventOrigin) Provision(ctx caddy.Context) error {
	o.ctx = ctx
	return nil
}

// SecurityEvent records a security event reported by the module that owns ctx (a context
// from eventContext). r may be nil
// for events no request caused (a breaker timer, a store failover). Info is for what the edge
// did as configured; Warn for what an operator should look at.
func (a *App) SecurityEvent(ctx caddy.Context, r *http.Request, level zapcore.Level, name string, data map[string]any) {
	s := a.security
	if s == nil {
		return
	}
	recordDashboardEvent(a, r, level, name, data) // its own rate bound, whatever is logged
	// Under a flood most events are neither logged nor subscribed to: decide that first, and
	// build nothing for them.
	emit := s.events != nil && s.events.ShouldEmit(name)
	ce := s.logger.Check(level, name)
	suppressed := 0
	if ce != nil {
		n, ok := s.budget.Admit(name, eventClient(r), time.Now())
		if !ok {
			ce = nil
		}
		suppressed = n
	}
	if !emit && ce == nil {
		return
	}
	full := make(map[string]any, len(data)+8)
	for k, v := range data {
		full[k] = v
	}
	full["event"] = name
	if mod := ctx.Module(); mod != nil {
		full["module"] = string(mod.CaddyModule().ID)
	}
	if r != nil {
		if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok {
			full["client_ip"] = ip
		}
		full["ip_class"] = a.ClassOf(r).String()
		full["method"] = r.Method
		full["host"] = textcut.Cut(r.Host, maxLoggedHost) // r.Method: Caddy refuses one over 32 bytes
		full["uri"] = loggedURI(r)
	}
	if emit {
		s.events.Emit(ctx, name, full)
	}
	if ce != nil {
		fields := eventFields(full) // full itself is not changed: subscribers may keep it
		if suppressed > 0 {
			fields = append(fields, zap.Int("suppressed", suppressed))
		}
		ce.Write(fields...)
	}
}

// originalURI is the request URI as the client sent it. Rewrites (handle_path, uri
// strip_prefix, rewrite) change r.RequestURI on the way; Caddy keeps the request as it arrived
// under caddyhttp.OriginalRequestCtxKey, so an event under `handle_path /api/monitoring/*`
// reads /api/monitoring/health, not /health.
func originalURI(r *http.Request) string {
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.RequestURI != "" {
		return orig.RequestURI
	}
	return r.RequestURI
}

// loggedURI is the request URI as the security log, the dashboard and error logs show it: the
// values of credential parameters redacted (redactQuery), the bytes that are not UTF-8 escaped
// as %XX, at most maxLoggedURI bytes, cut between characters and never inside an escape.
func loggedURI(r *http.Request) string {
	s := escapeInvalidUTF8(redactQuery(textcut.Cut(originalURI(r), maxLoggedURI))) // a bounded prefix
	if len(s) <= maxLoggedURI {
		return s
	}
	s = textcut.Cut(s, maxLoggedURI) // valid UTF-8 now: cut between characters
	if i := strings.LastIndexByte(s[len(s)-2:], '%'); i >= 0 {
		s = s[:len(s)-2+i] // and not inside an escape
	}
	return s
}

// escapeInvalidUTF8 writes the bytes of s that are not UTF-8 as %XX, as an upstream would
// receive them: a JSON log shows each as U+FFFD, which hides what was sent (%C0%AE or
// Latin-1 %E9). Valid text is returned as is, without allocating.
func escapeInvalidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			fmt.Fprintf(&b, "%%%02X", s[i])
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// eventClient is the client an event is counted for: Caddy's client IP (trusted_proxies
// respected); the zero Addr when no request caused the event.
func eventClient(r *http.Request) netip.Addr {
	if r == nil {
		return netip.Addr{}
	}
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Addr{}
	}
	return a
}

func eventFields(m map[string]any) []zap.Field {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fields := make([]zap.Field, 0, len(keys))
	for _, k := range keys {
		fields = append(fields, zap.Any(k, m[k]))
	}
	return fields
}
