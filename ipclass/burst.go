package ipclass

import (
	"hash/maphash"
	"time"
)

// Burst is how many signals of one kind a client may send before they score: a leaky bucket
// per client, as CrowdSec's http-probing scenario counts 404s. The bucket holds Allowance
// signals and gives one back every Leak; a signal that finds it full scores. A reader who
// meets a few broken links, or a wrong password typed twice, stays within it; a scanner (404s
// by the hundred a minute) or a password guesser overflows it within seconds, and every signal
// past it scores.
//
// Only the distinct ones count: a signal whose key (the path of a 404, the credentials of a
// failed authentication) is among the client's recent ones is a repeat (a page polling a
// missing URL, an expired token sent again) and neither fills the bucket nor scores.
type Burst struct {
	// Allowance is how many distinct signals a client may send in a burst without scoring.
	// 0: every signal scores, repeats included (no burst rule).
	Allowance int
	// Leak is how long the bucket takes to give one back. Default: the signal's DefaultBursts
	// leak (DefaultBurstLeak, 2s for rate_limited).
	Leak time.Duration
}

// DefaultBurstLeak is a burst's Leak unless configured.
const DefaultBurstLeak = 10 * time.Second

// DefaultBursts are the bursts of the signals unless configured: CrowdSec's http-probing
// bucket for 404s (10, one back every 10 s), its brute-force buckets for failed logins (5).
// With the default scores and threshold, a scanner is detected at its 30th distinct 404 in a
// burst and a password guesser at its 15th failure.
//
// Refusals of the rate limiter (30, one back every 2 s): a refusal is no attack, only a
// request over the client's limit, and a client is often many people (20 users of an office
// logging in within a minute get 15 refusals from the built-in authentication policy; when
// each scored, the 7th banned the office from the whole site). A client that keeps sending at
// several times its limit, a script ignoring Retry-After, overflows it: back to back it is
// detected at its 37th refusal, at one refusal a second after 72 s.
var DefaultBursts = map[Signal]Burst{
	SignalNotFound:    {Allowance: 10, Leak: DefaultBurstLeak},
	SignalAuthFailure: {Allowance: 5, Leak: DefaultBurstLeak},
	SignalRateLimited: {Allowance: 30, Leak: 2 * time.Second},
}

// burstSignals are the signals that may have a burst: the answers ordinary readers get too.
// Every other signal is an attack form on its own and scores at once.
var burstSignals = [...]Signal{SignalNotFound, SignalAuthFailure, SignalRateLimited}

// recentKeys is how many keys of its burst signals a client's entry remembers to tell
// repeats: a poller's URLs, a NAT's users fetching the same missing file, the missing fetches
// of a page viewed again (a single-page app prefetching its links from a build a deploy
// removed: with 8 kept, 15 such links were new again on every view, and banned the client at
// the third). 16 cost 32 bytes an entry more than 8 (35 → 41 MiB at max_tracked 200000).
const recentKeys = 16

// HasBurst reports whether sig may have a Burst (not_found, auth_failure and rate_limited).
func (s Signal) HasBurst() bool { return s.burstIndex() >= 0 }

func (s Signal) burstIndex() int {
	for i, b := range burstSignals {
		if b == s {
			return i
		}
	}
	return -1
}

// bucket is a resolved Burst, in nanoseconds: depth is Allowance × Leak (0: no burst rule).
type bucket struct{ depth, leak int64 }

func resolveBurst(sig Signal, b Burst) bucket {
	if b.Allowance <= 0 {
		return bucket{}
	}
	leak := b.Leak
	if leak <= 0 {
		leak = DefaultBursts[sig].Leak
	}
	return bucket{depth: int64(b.Allowance) * int64(leak), leak: int64(leak)}
}

// absorb reports whether the bucket takes one more signal at now (it then holds it). empty is
// when the bucket will be empty again (GCRA's theoretical arrival time): a full bucket takes
// nothing, so a scanner's signals past the allowance all score, save one every leak.
func (b bucket) absorb(empty *int64, now int64) bool {
	if b.depth == 0 {
		return false
	}
	t := max(*empty, now) + b.leak
	if t-now > b.depth {
		return false
	}
	*empty = t
	return true
}

// held is how many signals the bucket holds at now.
func (b bucket) held(empty, now int64) float64 {
	if b.depth == 0 || empty <= now {
		return 0
	}
	return float64(empty-now) / float64(b.leak)
}

// repeat reports whether key (hashed under the detector's seed, so no client can pick keys
// that collide) is among e's recent keys of sig, and remembers it if not. "" is no key: never
// a repeat.
func (e *entry) repeat(seed maphash.Seed, sig Signal, key string) bool {
	if key == "" {
		return false
	}
	sum := maphash.String(seed, key) + uint64(sig)
	h := uint32(sum>>32) ^ uint32(sum)
	if h == 0 { // 0 marks a free slot
		h = 1
	}
	for _, k := range e.recent {
		if k == h {
			return true
		}
	}
	e.recent[e.next%recentKeys] = h
	e.next++
	return false
}
