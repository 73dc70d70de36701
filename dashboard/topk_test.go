package dashboard

import (
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTopKFindsHeavyKeysAmongNoise(t *testing.T) {
	k := NewTopK()
	for i := 0; i < 100_000; i++ {
		k.Add("api", "noise-"+strconv.Itoa(i), false) // each seen once
		if i%10 == 0 {
			k.Add("api", "203.0.113.9", true)
		}
		if i%25 == 0 {
			k.Add("login", "198.51.100.7", true)
		}
	}
	if k.Len() != TopTracked {
		t.Fatalf("tracks %d keys, bound %d", k.Len(), TopTracked)
	}
	top := k.Top(TopShown)
	if len(top) != TopShown {
		t.Fatalf("%d rows shown", len(top))
	}
	if top[0].Key != "203.0.113.9" || top[0].Count < 10_000 || top[1].Key != "198.51.100.7" || top[1].Count < 4_000 {
		t.Fatalf("top rows: %+v", top[:3])
	}
}

// TestTopKKeepsBoundedKeys: the table keeps what it shows, never the raw key: a client IP key
// as it is (clipped), any other as a digest, so no credential is kept or shown and an entry's
// memory does not grow with the header size the server allows.
func TestTopKKeepsBoundedKeys(t *testing.T) {
	k := NewTopK()
	k.Add("ip", "2001:db8:1:2::/64", true)
	k.Add("ip", "@192.0.2.7", true)
	k.Add("keyed", "fe80::1%<img src=x onerror=alert(8)>", false)
	k.Add("keyed", "mon_secret-api-key", false)
	shown := map[string]bool{}
	for _, l := range k.Top(10) {
		shown[l.Key] = true
	}
	for _, want := range []string{"2001:db8:1:2::/64", "@192.0.2.7", ShownKey("fe80::1%<img src=x onerror=alert(8)>", false), ShownKey("mon_secret-api-key", false)} {
		if !shown[want] {
			t.Fatalf("%q not shown in %v", want, shown)
		}
	}
	if d := ShownKey("mon_secret-api-key", false); len(d) != len("sha256:")+16 || !strings.HasPrefix(d, "sha256:") {
		t.Fatalf("digest %q", d)
	}

	// 4 × TopTracked keys of 1 MiB each: after a GC the table holds far less than one of them.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	big := NewTopK()
	for i := 0; i < 4*TopTracked; i++ {
		key := strings.Repeat(strconv.Itoa(i%10), 1<<20)
		big.Add("keyed", key, i%2 == 0)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Fatalf("the table holds %d bytes for %d entries", grew, big.Len())
	}
	for _, l := range big.Top(TopTracked) {
		if len(l.Key) > maxShownKey {
			t.Fatalf("a key of %d bytes kept", len(l.Key))
		}
	}
	runtime.KeepAlive(big)
}

func TestTopKDecay(t *testing.T) {
	k := NewTopK()
	for i := 0; i < 8; i++ {
		k.Add("api", "a", true)
	}
	k.Add("api", "b", true)
	k.Decay()
	top := k.Top(10)
	if len(top) != 1 || top[0].Key != "a" || top[0].Count != 4 || k.Len() != 1 {
		t.Fatalf("after decay: %+v", top)
	}
	k.Add("api", "a", true)
	if top := k.Top(10); top[0].Count != 5 {
		t.Fatalf("the index is stale after decay: %+v", top)
	}
}

func TestTopKConcurrentAddNeverBlocks(t *testing.T) {
	k := NewTopK()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20_000; i++ {
				k.Add("api", "hot", true)
			}
		}()
	}
	wg.Wait()
	top := k.Top(1)
	if got := top[0].Count + k.Skipped(); got != 160_000 {
		t.Fatalf("counted %d + skipped %d = %d, want 160000", top[0].Count, k.Skipped(), got)
	}
}

func TestEventsRingIsBounded(t *testing.T) {
	var e Events
	long := make([]byte, 5000)
	for i := range long {
		long[i] = 'a'
	}
	fields := map[string]string{}
	for i := 0; i < 100; i++ {
		fields[fmt.Sprint("k", i)] = string(long)
	}
	for i := 0; i < 250; i++ {
		e.Add(Event{Time: t0.Add(time.Duration(i) * time.Second), Event: "path_blocked", URI: string(long), Fields: fields})
	}
	got := e.Last()
	if len(got) != MaxEvents {
		t.Fatalf("%d events kept, bound %d", len(got), MaxEvents)
	}
	if !got[0].Time.Equal(t0.Add(249*time.Second)) || !got[99].Time.Equal(t0.Add(150*time.Second)) {
		t.Fatalf("order: newest %v, oldest %v", got[0].Time, got[99].Time)
	}
	if len(got[0].URI) != MaxEventURI || len(got[0].Fields) != MaxEventFields {
		t.Fatalf("uri %d bytes, %d fields", len(got[0].URI), len(got[0].Fields))
	}
	for _, v := range got[0].Fields {
		if len(v) > maxFieldValue {
			t.Fatalf("field value of %d bytes", len(v))
		}
	}
}

func TestEventsAdmission(t *testing.T) {
	var e Events
	n := 0
	for i := 0; i < 1000; i++ {
		if e.Admit("csp_violation", netip.Addr{}, t0) {
			n++
		}
	}
	if n != eventBurst {
		t.Fatalf("admitted %d at once, want the burst %d", n, eventBurst)
	}
	// Each name has its own budget: the flood of one does not keep another out.
	if !e.Admit("path_blocked", netip.Addr{}, t0) {
		t.Fatal("path_blocked refused after a csp_violation flood")
	}
	if !e.Admit("csp_violation", netip.Addr{}, t0.Add(time.Second)) {
		t.Fatal("no event admitted a second later")
	}
	// The buckets stay bounded whatever names come.
	for i := 0; i < 1000; i++ {
		e.Admit(fmt.Sprint("name", i), netip.Addr{}, t0)
	}
	if e.budget.Names() > maxAdmitNames+1 {
		t.Fatalf("%d admission buckets, bound %d", e.budget.Names(), maxAdmitNames+1)
	}
}

// TestEventsFloodKeepsOtherNames: a flood of one name (CSP reports anyone may send) evicts its
// own events; the few events of the other names stay in the ring.
func TestEventsFloodKeepsOtherNames(t *testing.T) {
	var e Events
	at := t0
	add := func(name string) {
		at = at.Add(time.Millisecond)
		e.Add(Event{Time: at, Event: name})
	}
	for i := 0; i < 10; i++ {
		add("path_blocked")
		for j := 0; j < 100; j++ {
			add("csp_violation")
		}
	}
	add("ip_reclassified")
	for j := 0; j < 1000; j++ {
		add("csp_violation")
	}
	got := e.Last()
	if len(got) != MaxEvents {
		t.Fatalf("%d events kept, bound %d", len(got), MaxEvents)
	}
	names := map[string]int{}
	for i, ev := range got {
		names[ev.Event]++
		if i > 0 && ev.Time.After(got[i-1].Time) {
			t.Fatalf("not newest first at %d", i)
		}
	}
	if names["path_blocked"] != 10 || names["ip_reclassified"] != 1 || names["csp_violation"] != 89 {
		t.Fatalf("kept %v; want every path_blocked and ip_reclassified", names)
	}
	if !got[0].Time.Equal(at) {
		t.Fatalf("the newest event is not first: %v", got[0].Time)
	}
	// A name as numerous as the flood is evicted oldest first like any other.
	for j := 0; j < 200; j++ {
		add("path_blocked")
	}
	names = map[string]int{}
	for _, ev := range e.Last() {
		names[ev.Event]++
	}
	if names["path_blocked"] != 50 || names["csp_violation"] != 49 || names["ip_reclassified"] != 1 {
		t.Fatalf("after a second flood: %v", names)
	}
}

// TestMergeEventsKeepsOtherNames: merging instances keeps the names one instance's flood
// would push out.
func TestMergeEventsKeepsOtherNames(t *testing.T) {
	var a, b []Event
	for i := 0; i < MaxEvents; i++ {
		a = append(a, Event{Time: t0.Add(time.Duration(MaxEvents-i) * time.Second), Event: "csp_violation"})
	}
	b = append(b, Event{Time: t0, Event: "path_blocked"})
	got := mergeEvents([]Document{{Instance: "a", Events: a}, {Instance: "b", Events: b}})
	if len(got) != MaxEvents || got[len(got)-1].Event != "path_blocked" || got[len(got)-1].Instance != "b" {
		t.Fatalf("merged %d events, oldest %+v", len(got), got[len(got)-1])
	}
}

// BenchmarkTopKAdd is the cost on the refusal path: one flooding key (the common case),
// and keys that keep replacing the smallest entry (the worst case).
func BenchmarkTopKAdd(b *testing.B) {
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = "198.51.100." + strconv.Itoa(i)
	}
	b.Run("hot", func(b *testing.B) {
		k := NewTopK()
		b.ReportAllocs()
		for b.Loop() {
			k.Add("api", "203.0.113.9", true)
		}
	})
	b.Run("churn", func(b *testing.B) {
		k := NewTopK()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k.Add("api", keys[i&4095], true)
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		k := NewTopK()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				k.Add("api", keys[i&63], true)
				i++
			}
		})
	})
}

func BenchmarkEventsAdd(b *testing.B) {
	var e Events
	ev := Event{Time: t0, Event: "path_blocked", URI: "/../etc/passwd", Fields: map[string]string{"reason": "traversal"}}
	b.ReportAllocs()
	for b.Loop() {
		if e.Admit(ev.Event, netip.Addr{}, t0) {
			e.Add(ev)
		}
	}
}

// TestEventsShowHiddenCharacters: bidi controls, zero-width and control characters a client
// wrote into an event are shown escaped; other text, accents included, as it is.
func TestEventsShowHiddenCharacters(t *testing.T) {
	var e Events
	e.Add(Event{Time: t0, Event: "csp_violation", URI: "/caf\u00e9?a=\u2066x\u2069",
		Fields: map[string]string{"document_uri": "https://shop.example/admin/\u202egnp.exe", "sample": "a\u200bb\nc\U000E0041", "k\u202e": "v"}})
	got := e.Last()[0]
	for k, want := range map[string]string{"document_uri": `https://shop.example/admin/\u202Egnp.exe`, "sample": `a\u200Bb\u000Ac\U000E0041`, `k\u202E`: "v"} {
		if got.Fields[k] != want {
			t.Errorf("field %q = %q, want %q", k, got.Fields[k], want)
		}
	}
	if got.URI != `/café?a=\u2066x\u2069` {
		t.Errorf("uri %q", got.URI)
	}
	if s := "203.0.113.9 café"; Visible(s) != s {
		t.Errorf("plain text changed: %q", Visible(s))
	}
	if k := ShownKey("fe80::1%\u202eeth0", true); k != `fe80::1%\u202Eeth0` {
		t.Errorf("shown key %q", k)
	}
}
