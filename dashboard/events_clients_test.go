package dashboard

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestEventsFloodOfOneClientKeepsOtherClients: one client flooding csp_violation (forged
// reports anyone may post) evicted the oldest csp_violation, whoever sent it, so the reports
// of every other client left the ring within seconds; it now evicts its own (an IPv6 /64
// counting as one client), and the few of the others stay.
func TestEventsFloodOfOneClientKeepsOtherClients(t *testing.T) {
	var e Events
	at := t0
	add := func(name, client string) {
		at = at.Add(time.Millisecond)
		e.Add(Event{Time: at, Event: name, ClientIP: client})
	}
	add("path_blocked", "192.0.2.45")
	for i := 0; i < 5; i++ {
		add("csp_violation", fmt.Sprint("198.51.100.", i))
	}
	for j := 0; j < 1000; j++ {
		add("csp_violation", fmt.Sprintf("2001:db8:1:2::%x", j)) // one /64, a new address each time
	}
	kept := map[string]int{}
	for _, ev := range e.Last() {
		kept[ev.Event+" "+ev.ClientIP]++
	}
	if len(e.Last()) != MaxEvents || kept["path_blocked 192.0.2.45"] != 1 {
		t.Fatalf("kept %v", kept)
	}
	for i := 0; i < 5; i++ {
		if c := fmt.Sprint("198.51.100.", i); kept["csp_violation "+c] != 1 {
			t.Fatalf("the report of %s was pushed out by one client's flood", c)
		}
	}
	// The flood's own events are the newest of it.
	if got := e.Last()[0].ClientIP; got != "2001:db8:1:2::3e7" {
		t.Fatalf("newest %q", got)
	}
}

// TestEventsAdmissionShareOfOneClient: one client takes eventPerClient events of a name a
// second and beyond them only the upper half of the budget; another client is still admitted.
func TestEventsAdmissionShareOfOneClient(t *testing.T) {
	var e Events
	flooder, other := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("198.51.100.1")
	n := 0
	for i := 0; i < 1000; i++ {
		if e.Admit("csp_violation", flooder, t0) {
			n++
		}
	}
	if n != eventBurst/2 {
		t.Fatalf("one client admitted %d at once, want half the burst, %d", n, eventBurst/2)
	}
	for i := 0; i < eventPerClient; i++ {
		if !e.Admit("csp_violation", other, t0) {
			t.Fatalf("another client's event %d refused after one client's flood", i+1)
		}
	}
}
