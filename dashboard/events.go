package dashboard

import (
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/swarmsec/caddy-hardening/internal/textcut"
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
// does not keep the others out.
const (
	eventRate  = 50
	eventBurst = MaxEvents
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
}

// Events holds the last MaxEvents security events. When full, a new event evicts the oldest
// event of the name with the most events (the newcomer's included): a name that floods the
// ring replaces its own events, never the last few of another. Safe for concurrent use.
type Events struct {
	mu      sync.Mutex
	buf     []Event // oldest first, at most MaxEvents
	buckets map[string]*admitBucket
}

type admitBucket struct {
	tokens float64
	last   time.Time
}

// Admit reports whether an event named name at now may enter the ring (at most eventRate a
// second per name, with a burst of eventBurst). Call it before building the event.
func (e *Events) Admit(name string, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	b := e.buckets[name]
	if b == nil {
		if len(e.buckets) >= maxAdmitNames {
			name = "" // shared by the names past the bound
		}
		if b = e.buckets[name]; b == nil {
			if e.buckets == nil {
				e.buckets = make(map[string]*admitBucket)
			}
			b = &admitBucket{tokens: eventBurst, last: now}
			e.buckets[name] = b
		}
	}
	b.tokens = min(eventBurst, b.tokens+now.Sub(b.last).Seconds()*eventRate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Add puts ev in the ring, bounding its fields and making their hidden characters visible.
func (e *Events) Add(ev Event) {
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
	e.mu.Lock()
	e.put(ev)
	e.mu.Unlock()
}

// put appends ev, evicting first when the ring is full. The caller holds e.mu (or owns e).
func (e *Events) put(ev Event) {
	if e.buf == nil {
		e.buf = make([]Event, 0, MaxEvents)
	}
	if len(e.buf) == MaxEvents {
		i := e.evictable(ev.Event)
		copy(e.buf[i:], e.buf[i+1:])
		e.buf = e.buf[:MaxEvents-1]
	}
	e.buf = append(e.buf, ev)
}

// evictable is the index of the oldest event of the name with the most events, counting a
// newcomer named name; among names with as many, the one whose oldest event is oldest.
func (e *Events) evictable(name string) int {
	var names [MaxEvents + 1]string
	var counts, first [MaxEvents + 1]int
	n := 0
	count := func(s string, i int) {
		for j := 0; j < n; j++ {
			if names[j] == s {
				counts[j]++
				return
			}
		}
		names[n], counts[n], first[n] = s, 1, i
		n++
	}
	for i := range e.buf {
		count(e.buf[i].Event, i)
	}
	count(name, len(e.buf))
	best := 0
	for j := 1; j < n; j++ {
		if counts[j] > counts[best] || (counts[j] == counts[best] && first[j] < first[best]) {
			best = j
		}
	}
	return first[best] // never the newcomer's: on a tie an event in the ring is older
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
