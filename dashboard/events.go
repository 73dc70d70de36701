package dashboard

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/swarmsec/caddy-hardening/internal/eventbudget"
	"github.com/swarmsec/caddy-hardening/internal/textcut"
	"github.com/swarmsec/caddy-hardening/ipclass"
)

// Bounds of one recorded event: an attacker chooses the URI and some field values.
const (
	MaxEvents      = 100
	MaxEventURI    = 512
	MaxEventFields = 16
	maxFieldKey    = 64
	maxFieldValue  = 256
	maxShortField  = 64 // event name, level, client IP, class
)

// eventRate and eventBurst bound how many events of one name per second the ring takes:
// under a flood the ring keeps being refreshed without every event paying for a copy. Each
// name has its own budget, so a flood of one (csp_violation, from unauthenticated reports)
// does not keep the others out; within a name, one client takes eventPerClient a second in any
// case and beyond them only the upper half of the budget, so its flood does not keep the same
// event of other clients out either (the security log's rule, eventbudget).
const (
	eventRate      = 50
	eventBurst     = MaxEvents
	eventPerClient = 10
)

// maxAdmitNames bounds the admission buckets: callers pass their own constant names, and any
// further names share one bucket.
const maxAdmitNames = 32

// Event is one security event as the dashboard shows it.
type Event struct {
	Time     time.Time         `json:"time"`
	Instance string            `json:"instance,omitempty"`
	Event    string            `json:"event"`
	Level    string            `json:"level"`
	ClientIP string            `json:"client_ip,omitempty"`
	IPClass  string            `json:"ip_class,omitempty"`
	URI      string            `json:"uri,omitempty"`
	Fields   map[string]string `json:"fields,omitempty"`

	client netip.Addr // ClientIP as the ring counts it (an IPv6 /64), set by put
}

// Events holds the last MaxEvents security events. When full, a new event evicts the oldest
// event of the name with the most events (the newcomer's included), and of that name's client
// (an IPv6 /64) with the most: a name that floods the ring replaces its own events, never the
// last few of another, and a client that floods a name replaces its own, never the last few
// of another client. Safe for concurrent use.
type Events struct {
	mu     sync.Mutex
	buf    []Event // oldest first, at most MaxEvents
	budget eventbudget.Budget
	once   sync.Once
}

// Admit reports whether an event named name from client (the zero Addr when no request
// caused it) at now may enter the ring: at most eventRate a second per name, with a burst of
// eventBurst, one client's share bounded. Call it before building the event.
func (e *Events) Admit(name string, client netip.Addr, now time.Time) bool {
	e.once.Do(func() {
		e.budget = eventbudget.Budget{Rate: eventRate, Burst: eventBurst, PerClient: eventPerClient, MaxNames: maxAdmitNames}
	})
	_, ok := e.budget.Admit(name, client, now)
	return ok
}

// Add puts ev in the ring, bounding its fields and making their hidden characters visible.
func (e *Events) Add(ev Event) {
	ev = clip(ev)
	e.mu.Lock()
	e.put(ev)
	e.mu.Unlock()
}

// clip bounds ev's fields and makes their hidden characters visible.
func clip(ev Event) Event {
	ev.Event = textcut.Cut(Visible(ev.Event), maxShortField)
	ev.Level = textcut.Cut(Visible(ev.Level), maxShortField)
	ev.ClientIP = textcut.Cut(Visible(ev.ClientIP), maxShortField)
	ev.IPClass = textcut.Cut(Visible(ev.IPClass), maxShortField)
	ev.Instance = textcut.Cut(Visible(ev.Instance), maxShortField)
	ev.URI = textcut.Cut(Visible(ev.URI), MaxEventURI)
	if len(ev.Fields) > 0 {
		f := make(map[string]string, min(len(ev.Fields), MaxEventFields))
		for k, v := range ev.Fields {
			if len(f) == MaxEventFields {
				break
			}
			f[textcut.Cut(Visible(k), maxFieldKey)] = textcut.Cut(Visible(v), maxFieldValue)
		}
		ev.Fields = f
	}
	return ev
}

// put appends ev, evicting first when the ring is full. The caller holds e.mu (or owns e).
func (e *Events) put(ev Event) {
	if e.buf == nil {
		e.buf = make([]Event, 0, MaxEvents)
	}
	ev.client = clientOf(ev.ClientIP)
	if len(e.buf) == MaxEvents {
		i := e.evictable(ev)
		copy(e.buf[i:], e.buf[i+1:])
		e.buf = e.buf[:MaxEvents-1]
	}
	e.buf = append(e.buf, ev)
}

// clientOf is the client an event's ClientIP counts as: an IPv6 address's /64; the zero
// Addr for none.
func clientOf(ip string) netip.Addr {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Addr{}
	}
	return ipclass.ClientAddr(a, 64)
}

// evictable is the index of the oldest event of the name with the most events, counting the
// newcomer ev, and among them of the client with the most; among names (clients) with as
// many, the one whose oldest event is oldest.
func (e *Events) evictable(ev Event) int {
	var names [MaxEvents + 1]string
	var clients [MaxEvents + 1]netip.Addr
	var counts, first [MaxEvents + 1]int
	n := 0
	count := func(i int, same func(j int) bool, set func(j int)) {
		for j := 0; j < n; j++ {
			if same(j) {
				counts[j]++
				return
			}
		}
		set(n)
		counts[n], first[n] = 1, i
		n++
	}
	most := func() int {
		best := 0
		for j := 1; j < n; j++ {
			if counts[j] > counts[best] || (counts[j] == counts[best] && first[j] < first[best]) {
				best = j
			}
		}
		return best
	}
	byName := func(i int, s string) {
		count(i, func(j int) bool { return names[j] == s }, func(j int) { names[j] = s })
	}
	for i := range e.buf {
		byName(i, e.buf[i].Event)
	}
	byName(len(e.buf), ev.Event)
	name := names[most()]
	n = 0
	byClient := func(i int, c netip.Addr) {
		count(i, func(j int) bool { return clients[j] == c }, func(j int) { clients[j] = c })
	}
	for i := range e.buf {
		if e.buf[i].Event == name {
			byClient(i, e.buf[i].client)
		}
	}
	if ev.Event == name {
		byClient(len(e.buf), ev.client)
	}
	return first[most()] // never the newcomer's: on a tie an event in the ring is older
}

// Last returns the recorded events, newest first.
func (e *Events) Last() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Event, len(e.buf))
	for i, ev := range e.buf {
		out[len(out)-1-i] = ev
	}
	return out
}

// Visible writes as \uXXXX (\UXXXXXXXX past U+FFFF) the characters that change how the
// text around them reads instead of being read themselves: format characters (bidi overrides
// and isolates such as U+202E, which shows "\u202egnp.exe" as "exe.png"; zero-width ones),
// control characters and line or paragraph separators. Clients write much of an event (a URI,
// a CSP report's fields): the dashboard shows what they sent. Other text is returned as is,
// without allocating.
func Visible(s string) string {
	i := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				break
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if hidden(r) {
			break
		}
		i += n
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 10)
	b.WriteString(s[:i])
	for _, r := range s[i:] {
		switch {
		case !hidden(r):
			b.WriteRune(r)
		case r > 0xFFFF:
			fmt.Fprintf(&b, `\U%08X`, r)
		default:
			fmt.Fprintf(&b, `\u%04X`, r)
		}
	}
	return b.String()
}

func hidden(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}
