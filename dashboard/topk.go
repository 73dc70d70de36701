package dashboard

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/swarmsec/caddy-hardening/internal/textcut"
)

// TopTracked is how many keys the top-K tracks; TopShown how many the dashboard shows.
const (
	TopTracked = 64
	TopShown   = 20
)

// TopK counts the most refused keys with the space-saving algorithm (Metwally et al.): a
// fixed table of TopTracked entries; a key not in a full table replaces the smallest entry
// and inherits its count plus one, so a heavy key is never missed and a count overstates by
// at most the smallest count.
//
// Add is on the refusal path of policy_rate_limit, so it never waits: when another goroutine
// holds the table, the call is skipped (counted in Skipped). Under a flood from many cores the
// table therefore sees a sample of the refusals, which keeps the heavy keys on top.
type TopK struct {
	mu      sync.Mutex
	index   map[topKey]int
	items   [TopTracked]topItem
	n       int
	skipped atomic.Uint64
}

type topKey struct{ policy, key string }

type topItem struct {
	k     topKey
	count uint64
}

// NewTopK returns an empty table.
func NewTopK() *TopK { return &TopK{index: make(map[topKey]int, TopTracked)} }

// maxShownKey bounds a client IP key as kept and shown: an address, an IPv6 network, with
// the fallback's mark (@2001:db8:1:2::/64).
const maxShownKey = 64

// ShownKey is what the table keeps and shows of a refused key: when the key is the client IP
// (clientIP, as the rate limiter decided it, never guessed from the value), that IP form;
// any other key as sha256:<16 hex>, since it may be a credential (an API key) and its length
// is the client's choice. Either way an entry's memory is bounded.
func ShownKey(key string, clientIP bool) string {
	if clientIP {
		key = Visible(key) // a zone (fe80::1%...) is text a trusted proxy passed on
		if len(key) > maxShownKey {
			return strings.Clone(textcut.Cut(key, maxShownKey)) // not a slice that keeps the whole key
		}
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:8])
}

// Add counts one refusal of key under policy; clientIP says whether the key is the client IP
// (see ShownKey).
func (t *TopK) Add(policy, key string, clientIP bool) {
	shown := ShownKey(key, clientIP)
	if !t.mu.TryLock() {
		t.skipped.Add(1)
		return
	}
	k := topKey{policy, shown}
	if i, ok := t.index[k]; ok {
		t.items[i].count++
		t.mu.Unlock()
		return
	}
	if t.n < TopTracked {
		t.items[t.n] = topItem{k: k, count: 1}
		t.index[k] = t.n
		t.n++
		t.mu.Unlock()
		return
	}
	m := 0
	for i := 1; i < TopTracked; i++ {
		if t.items[i].count < t.items[m].count {
			m = i
		}
	}
	delete(t.index, t.items[m].k)
	t.items[m] = topItem{k: k, count: t.items[m].count + 1}
	t.index[k] = m
	t.mu.Unlock()
}

// Decay halves every count and forgets keys that reach zero, so the table follows the
// recent refusals rather than those since the start.
func (t *TopK) Decay() {
	t.mu.Lock()
	defer t.mu.Unlock()
	j := 0
	clear(t.index)
	for i := 0; i < t.n; i++ {
		it := t.items[i]
		it.count /= 2
		if it.count == 0 {
			continue
		}
		t.items[j] = it
		t.index[it.k] = j
		j++
	}
	for i := j; i < t.n; i++ {
		t.items[i] = topItem{}
	}
	t.n = j
}

// Top returns the n keys with the highest counts, highest first, as ShownKey wrote them.
func (t *TopK) Top(n int) []Limited {
	t.mu.Lock()
	items := append([]topItem(nil), t.items[:t.n]...)
	t.mu.Unlock()
	sort.Slice(items, func(i, j int) bool {
		if items[i].count != items[j].count {
			return items[i].count > items[j].count
		}
		return items[i].k.key < items[j].k.key
	})
	if len(items) > n {
		items = items[:n]
	}
	out := make([]Limited, len(items))
	for i, it := range items {
		out[i] = Limited{Policy: it.k.policy, Key: it.k.key, Count: it.count}
	}
	return out
}

// Len is how many keys the table holds (at most TopTracked).
func (t *TopK) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// Skipped is how many Add calls found the table busy and were not counted.
func (t *TopK) Skipped() uint64 { return t.skipped.Load() }
