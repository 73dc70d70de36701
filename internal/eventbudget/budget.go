// Package eventbudget bounds how many events of each name are taken per second, one client's
// share of a name's budget bounded: the security log and the dashboard's list of the last
// security events take events through it, so one client flooding an event (forged CSP
// reports, 100 to a request) does not keep the same event of every other client out.
package eventbudget

import (
	"net/netip"
	"sync"
	"time"

	"github.com/swarmsec/caddy-hardening/ipclass"
)

// Budget is a token bucket per event name (Rate a second, at most Burst), whose lower half one
// client takes at most PerClient events of a second: beyond them, a client's events are taken
// only while more than half of Burst is left. A flooding client thus gets about half of the
// budget, the same event of other clients is still taken (PerClient each), and a single
// client's burst (a scanner's probes) is taken in full up to about half of Burst. A client is
// an address, an IPv6 address counting as its /64; events no request caused (the zero Addr)
// have only the name's budget. Set the fields before the first Admit. Safe for concurrent use.
type Budget struct {
	Rate      float64 // tokens a second, per name
	Burst     float64 // tokens a name holds at most (and starts with)
	PerClient int     // events of a name one client takes a second in any case
	MaxNames  int     // names past this many share one bucket; 0: callers' names are constants

	mu      sync.Mutex
	buckets map[string]*bucket
	// clients counts the taken events of each name and client in the current second
	// (window); it is emptied when the second changes. An entry is added only for an event
	// that is taken, so it never holds more than the events taken in one second: clients an
	// attacker makes up grow nothing.
	clients map[clientEvent]int
	window  int64
}

type bucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

// clientEvent is an event name and the client it is counted for.
type clientEvent struct {
	name   string
	client netip.Addr
}

// Admit reports whether an event named name from client at now is taken, and how many events
// of the name were refused since the last one taken.
func (b *Budget) Admit(name string, client netip.Addr, now time.Time) (int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.buckets[name]
	if k == nil {
		if b.MaxNames > 0 && len(b.buckets) >= b.MaxNames {
			name = "" // shared by the names past the bound
		}
		if k = b.buckets[name]; k == nil {
			if b.buckets == nil {
				b.buckets = make(map[string]*bucket)
			}
			k = &bucket{tokens: b.Burst, last: now}
			b.buckets[name] = k
		}
	}
	k.tokens = min(b.Burst, k.tokens+now.Sub(k.last).Seconds()*b.Rate)
	k.last = now
	if sec := now.Unix(); sec != b.window || b.clients == nil {
		b.window, b.clients = sec, make(map[clientEvent]int)
	}
	if client.IsValid() {
		client = ipclass.ClientAddr(client, 64)
	}
	ce := clientEvent{name, client}
	overShare := client.IsValid() && b.clients[ce] >= b.PerClient
	if k.tokens < 1 || overShare && k.tokens-1 < b.Burst/2 {
		k.suppressed++
		return 0, false
	}
	k.tokens--
	if client.IsValid() {
		b.clients[ce]++
	}
	n := k.suppressed
	k.suppressed = 0
	return n, true
}

// Clients is how many (name, client) pairs the current second counts.
func (b *Budget) Clients() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.clients)
}

// Names is how many name buckets there are.
func (b *Budget) Names() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buckets)
}
