package dashboard

import (
	"sync"
	"time"
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

// eventRate and eventBurst bound how many events per second the ring takes: under a flood
// the ring keeps being refreshed without every event paying for a copy.
const (
	eventRate  = 50
	eventBurst = MaxEvents
)

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

// Events is a ring of the last MaxEvents security events. Safe for concurrent use.
type Events struct {
	mu     sync.Mutex
	buf    [MaxEvents]Event
	next   int
	n      int
	tokens float64
	last   time.Time
}

// Admit reports whether an event at now may enter the ring (at most eventRate a second, with
// a burst of eventBurst). Call it before building the event.
func (e *Events) Admit(now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.last.IsZero() {
		e.tokens = eventBurst
	} else {
		e.tokens = min(eventBurst, e.tokens+now.Sub(e.last).Seconds()*eventRate)
	}
	e.last = now
	if e.tokens < 1 {
		return false
	}
	e.tokens--
	return true
}

// Add puts ev in the ring, bounding its fields, and drops the oldest when full.
func (e *Events) Add(ev Event) {
	ev.Event = clip(ev.Event, maxShortField)
	ev.Level = clip(ev.Level, maxShortField)
	ev.ClientIP = clip(ev.ClientIP, maxShortField)
	ev.IPClass = clip(ev.IPClass, maxShortField)
	ev.Instance = clip(ev.Instance, maxShortField)
	ev.URI = clip(ev.URI, MaxEventURI)
	if len(ev.Fields) > 0 {
		f := make(map[string]string, min(len(ev.Fields), MaxEventFields))
		for k, v := range ev.Fields {
			if len(f) == MaxEventFields {
				break
			}
			f[clip(k, maxFieldKey)] = clip(v, maxFieldValue)
		}
		ev.Fields = f
	}
	e.mu.Lock()
	e.buf[e.next] = ev
	e.next = (e.next + 1) % MaxEvents
	e.n = min(e.n+1, MaxEvents)
	e.mu.Unlock()
}

// Last returns the recorded events, newest first.
func (e *Events) Last() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Event, 0, e.n)
	for k := 1; k <= e.n; k++ {
		out = append(out, e.buf[(e.next-k+MaxEvents)%MaxEvents])
	}
	return out
}

// clip cuts s to at most n bytes, on a UTF-8 boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
