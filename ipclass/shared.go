package ipclass

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// SharedBans spreads detections between instances through Redis: every detection (and every
// operator ban or unban) is added to a sorted set (member: the IP, score: when it ends, in ms)
// and published on a channel; every instance applies what it receives at once, and reloads the
// set when it (re)subscribes and every ReloadEvery, so a missed message is caught up.
//
// Requests never wait on Redis: publishing goes through a bounded queue served by one
// goroutine, and a failing Redis only means detections stay local until it answers again.
//
// Redis may lose the set (a restart without persistence, FLUSHALL, an eviction): a marker key
// (<prefix>{ipclass}:epoch) holds a random value, made by the first reload that finds it
// missing. An instance that finds it missing, or holding another value than it last saw,
// adds its own active detections to the set again (ZADD NX: an end already there is kept;
// NX, not GT, which needs Redis 6.2) and
// asks the others to reload, which then do the same; so an instance started after the loss
// still learns the bans the running ones hold.
//
// Both sides watch Redis: a failed publication, and on the subscriber a broken subscription
// (its connection closed, or a ping unanswered after subscriberPing of silence), make Failing
// true and log once; when the subscription is back, the set is read again (the detections
// made meanwhile apply), Failing turns false, and that is logged once too. So an instance
// that only receives detections notices an outage as well as one that publishes.
type SharedBans struct {
	client  redis.UniversalClient
	key     string // sorted set of active detections
	epoch   string // marker of the set's life: a new value means Redis lost it
	channel string
	// writeCheck is the key checkWrite writes while only publications fail.
	writeCheck string
	det        *Detector
	maxBans    int
	origin     string
	logf       func(msg string, err error)

	queue chan banMessage
	// overflowing is set when the full queue refuses a publication, and cleared once the queue
	// has drained to half its size (see enqueue); dropped counts the publications refused
	// meanwhile. overflowMu guards the change of both, never a publication the queue takes.
	overflowing atomic.Bool
	overflowMu  sync.Mutex
	dropped     int
	mu          sync.Mutex

	epochMu   sync.Mutex
	seenEpoch string // the marker's value at the last reload ("" before the first)

	cancel context.CancelFunc
	wg     sync.WaitGroup

	healthMu sync.Mutex
	down     [2]bool     // per side (sidePublish, sideSubscribe): its last attempt failed
	cause    error       // the last failure of a side, while one is down
	failing  atomic.Bool // either side is down
}

// The two sides whose failures Failing reports.
const (
	sidePublish = iota
	sideSubscribe
)

// subscriberPing is how long the subscription may stay silent before it is pinged; a ping
// unanswered for as long again counts as a broken subscription (a frozen Redis, a partition
// that drops packets). A closed connection counts at once.
var subscriberPing = 3 * time.Second

// resubscribeEvery is the pause between attempts to subscribe again while Redis fails.
var resubscribeEvery = time.Second

// ReloadEvery is how often the shared set is read whole, to catch up on missed messages.
const ReloadEvery = 30 * time.Second

// queueSize bounds the publications waiting for Redis; beyond it they are dropped (the
// detection still applies locally).
const queueSize = 1024

// opTimeout bounds one Redis operation of the sync.
const opTimeout = 2 * time.Second

type banMessage struct {
	Op      string `json:"op"` // "ban", "unban", or "reload" (read the set now: it was refilled)
	IP      string `json:"ip"`
	UntilMs int64  `json:"until_ms,omitempty"`
	Signal  string `json:"signal,omitempty"`
	Origin  string `json:"origin"`
}

// NewSharedBans prepares the sync; keyPrefix starts its keys (a hash tag keeps them in one
// Cluster slot). maxBans bounds the shared set (Settings.Tracked; 0 or less means
// DefaultMaxTracked). logf reports Redis failures (nil err: recovered). Call Start, then Stop.
func NewSharedBans(client redis.UniversalClient, keyPrefix string, det *Detector, maxBans int, logf func(string, error)) *SharedBans {
	if maxBans <= 0 {
		maxBans = DefaultMaxTracked
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	return &SharedBans{
		client: client, det: det, maxBans: maxBans, logf: logf,
		key:        keyPrefix + "{ipclass}:detected",
		writeCheck: keyPrefix + "{ipclass}:write-check",
		epoch:      keyPrefix + "{ipclass}:epoch",
		channel:    keyPrefix + "{ipclass}:events",
		origin:     hex.EncodeToString(id[:]),
		queue:      make(chan banMessage, queueSize),
	}
}

// Start runs the subscriber, the periodic reload and the publisher; later calls do nothing.
func (s *SharedBans) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(3)
	go s.subscribe(ctx)
	go s.reloadLoop(ctx)
	go s.publishLoop(ctx)
}

// Stop ends the goroutines; queued publications not yet sent are dropped.
func (s *SharedBans) Stop() {
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		s.wg.Wait()
	}
}

// Publish shares a detection; it never blocks. A loopback client's stays local: 127.0.0.1 is
// another host on every other instance, whose own health checks it would ban.
func (s *SharedBans) Publish(d Detection) {
	if d.holdsLoopback(s.det.IPv6Prefix()) {
		return
	}
	s.enqueue(banMessage{Op: "ban", IP: d.Key(), UntilMs: d.Until.UnixMilli(), Signal: d.Signal.String()})
}

// PublishUnban shares an operator's unban; it never blocks.
func (s *SharedBans) PublishUnban(a netip.Addr) {
	s.enqueue(banMessage{Op: "unban", IP: a.Unmap().String()})
}

// PublishUnbanNetwork shares an operator's unban of a wider network (Detector.UnbanNetwork);
// it never blocks.
func (s *SharedBans) PublishUnbanNetwork(p netip.Prefix) {
	s.enqueue(banMessage{Op: "unban", IP: p.Masked().String()})
}

// ban applies a shared detection: a client's address, or a wider network's prefix
// (2001:db8:1::/48) as escalations publish them; anything else is ignored, and so is a
// loopback client (an older instance published them: another host's own address).
func (s *SharedBans) ban(ip string, until time.Time) {
	if p, err := netip.ParsePrefix(ip); err == nil && !p.Contains(ipv6Loopback) {
		s.det.BanNetwork(p, until, SignalShared)
	} else if a, err := netip.ParseAddr(ip); err == nil && !HoldsLoopback(s.det.Client(a), s.det.IPv6Prefix()) {
		s.det.Ban(a, until, SignalShared)
	}
}

// enqueue queues m for publication. Past the bound it drops m, logging once when the queue
// fills and once when it has drained to half its size (with how many stayed local): one line
// per dropped detection would be one per request of clients an attacker makes up, while Redis
// stalls. The half is hysteresis: with Redis slower than the detections come (a distant or
// loaded Redis, clients made up faster than it publishes), each publication frees one slot,
// and "takes again" at the first free slot logged two lines per publication Redis made, for
// as long as the overload lasted. Now a queue kept full logs one line, and a pair needs half
// a queue (queueSize/2 detections) published between them.
func (s *SharedBans) enqueue(m banMessage) {
	m.Origin = s.origin
	select {
	case s.queue <- m:
		if s.overflowing.Load() && len(s.queue) <= queueSize/2 {
			s.overflowMu.Lock()
			n, ended := s.dropped, s.overflowing.Swap(false)
			s.dropped = 0
			s.overflowMu.Unlock()
			if ended {
				s.logf(fmt.Sprintf("shared detections: the publish queue takes publications again; %d detections stayed local while it was full", n), nil)
			}
		}
	default:
		s.overflowMu.Lock()
		s.dropped++
		started := !s.overflowing.Swap(true)
		s.overflowMu.Unlock()
		if started {
			s.logf("shared detections: publish queue full (Redis is slow or stalled): detections stay local until it has room; their number is logged once it has drained to half", nil)
		}
	}
}

func (s *SharedBans) publishLoop(ctx context.Context) {
	defer s.wg.Done()
	check := time.NewTicker(resubscribeEvery)
	defer check.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case m := <-s.queue:
			err = s.publish(ctx, m)
		case <-check.C:
			if !s.onlyPublishingDown() {
				continue
			}
			err = s.checkWrite(ctx)
		}
		if ctx.Err() != nil {
			return // stopped while it waited: not a Redis failure
		}
		s.report(sidePublish, err)
	}
}

// onlyPublishingDown reports a failed publication while the subscription works: Redis answers
// but refused the write (full at maxmemory, an ACL without the keys). Nothing else finds that
// it takes writes again (the subscription, never broken, does not start again), so
// checkWrite does, until it does.
func (s *SharedBans) onlyPublishingDown() bool {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	return s.down[sidePublish] && !s.down[sideSubscribe]
}

// checkWrite writes a key of its own that lives a second: a write such a Redis refuses.
func (s *SharedBans) checkWrite(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	return s.client.Set(ctx, s.writeCheck, s.origin, time.Second).Err()
}

// report records whether one side works, and logs once when sharing starts failing and once
// when both sides work again. A subscription that works again (it has just read the shared
// set) shows Redis answers, so it clears a publication failure too: the publications that
// failed are not retried (those detections stay local, README).
func (s *SharedBans) report(side int, err error) {
	s.healthMu.Lock()
	before := s.down[sidePublish] || s.down[sideSubscribe]
	s.down[side] = err != nil
	if err != nil {
		s.cause = err
	}
	if side == sideSubscribe && err == nil {
		s.down[sidePublish] = false
	}
	after := s.down[sidePublish] || s.down[sideSubscribe]
	s.failing.Store(after)
	s.healthMu.Unlock()
	switch {
	case after && !before:
		s.logf("shared detections: Redis unavailable: detections stay local, and other instances' are not received, until it answers", err)
	case before && !after:
		s.logf("shared detections: Redis answers again; the shared detections were read again", nil)
	}
}

func (s *SharedBans) publish(ctx context.Context, m banMessage) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	payload, err := json.Marshal(m)
	if err != nil {
		return err
	}
	cmds, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if m.Op == "ban" {
			p.ZAdd(ctx, s.key, redis.Z{Score: float64(m.UntilMs), Member: m.IP})
			p.ZRemRangeByScore(ctx, s.key, "-inf", strconv.FormatInt(time.Now().UnixMilli(), 10))
			// Keep the maxBans detections that end last: the set an attacker grows is bounded.
			p.ZRemRangeByRank(ctx, s.key, 0, int64(-s.maxBans-1))
		} else {
			p.ZRem(ctx, s.key, m.IP)
		}
		return nil
	})
	if err != nil {
		err = refusedInTransaction(cmds, err)
		var answered redis.Error
		if errors.As(err, &answered) {
			// Redis answered and refused the write (full at maxmemory with noeviction, an ACL
			// without the key): PUBLISH needs neither memory nor the key, so the instances
			// subscribed now still apply the detection, until its end. The refusal is still
			// the failure reported: an instance that reads the set meanwhile misses it.
			_ = s.client.Publish(ctx, s.channel, payload).Err()
		}
		return err
	}
	return s.client.Publish(ctx, s.channel, payload).Err()
}

// subscribe keeps a subscription to the channel: each time it breaks, the failure is reported
// and a new one is made after resubscribeEvery.
func (s *SharedBans) subscribe(ctx context.Context) {
	defer s.wg.Done()
	for {
		err := s.receive(ctx)
		if ctx.Err() != nil {
			return
		}
		s.report(sideSubscribe, err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(resubscribeEvery):
		}
	}
}

// receive subscribes and applies what arrives until the subscription breaks; it returns why.
// Every (re)subscription reads the shared set whole, since messages may have been missed, and
// reports the subscription healthy once that read succeeded.
func (s *SharedBans) receive(ctx context.Context) error {
	ps := s.client.Subscribe(ctx, s.channel) // a failure here shows in the first receive
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() }) // unblocks the read on Stop
	defer stop()
	pinged := false
	for {
		v, err := ps.ReceiveTimeout(ctx, subscriberPing)
		if err != nil {
			var ne net.Error
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case !errors.As(err, &ne) || !ne.Timeout():
				return err
			case pinged:
				return fmt.Errorf("no answer to a ping within %v", subscriberPing)
			}
			// Silent for a while: ask for a sign of life.
			if err := ps.Ping(ctx); err != nil {
				return err
			}
			pinged = true
			continue
		}
		pinged = false
		switch m := v.(type) {
		case *redis.Subscription:
			if err := s.Reload(ctx); err != nil {
				return err
			}
			s.report(sideSubscribe, nil)
		case *redis.Message:
			s.apply(ctx, m.Payload)
		}
	}
}

func (s *SharedBans) apply(ctx context.Context, payload string) {
	var m banMessage
	if len(payload) > 512 || json.Unmarshal([]byte(payload), &m) != nil || m.Origin == s.origin {
		return
	}
	if m.Op == "reload" {
		_ = s.Reload(ctx) // a failure shows in the subscription or the next reload
		return
	}
	switch m.Op {
	case "ban":
		s.ban(m.IP, time.UnixMilli(m.UntilMs))
	case "unban":
		if p, err := netip.ParsePrefix(m.IP); err == nil {
			s.det.UnbanNetwork(p)
		} else if a, err := netip.ParseAddr(m.IP); err == nil {
			s.det.Unban(a)
		}
	}
}

func (s *SharedBans) reloadLoop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(ReloadEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = s.Reload(ctx)
		}
	}
}

// Failing reports whether sharing fails (Redis unreachable): the last publication failed, or
// the subscription is broken and not yet back. Detections stay local meanwhile.
func (s *SharedBans) Failing() bool { return s.failing.Load() }

// Failure is why sharing fails (the last error of a side that is down), or nil while it works:
// a Redis that cannot be reached, or one that answers but refuses (an ACL's NOPERM for the
// channel or the keys).
func (s *SharedBans) Failure() error {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	if !s.down[sidePublish] && !s.down[sideSubscribe] {
		return nil
	}
	return s.cause
}

// Reload applies every active detection in the shared set. It only adds: a shared detection
// absent from the set (an unban whose message this instance missed) stays until it ends.
// Dropping such entries here would race with a ban received between the read and the drop.
// First it checks the set's marker, and when Redis lost the set it adds this instance's
// detections to it again (see SharedBans).
func (s *SharedBans) Reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := s.checkEpoch(ctx); err != nil {
		return err
	}
	zs, err := s.client.ZRangeByScoreWithScores(ctx, s.key, &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(time.Now().UnixMilli(), 10), Max: "+inf", Count: int64(s.maxBans),
	}).Result()
	if err != nil {
		return err
	}
	for _, z := range zs {
		ip, _ := z.Member.(string)
		s.ban(ip, time.UnixMilli(int64(z.Score)))
	}
	return nil
}

// republishChunk is how many detections one ZADD of a republication carries.
const republishChunk = 1000

// checkEpoch reads the set's marker, making it when it is missing; when it was missing or
// holds another value than at the last reload (another instance made it after a loss), the
// set was lost: this instance's active detections are added again, and the others are asked
// to reload.
func (s *SharedBans) checkEpoch(ctx context.Context) error {
	s.epochMu.Lock()
	defer s.epochMu.Unlock()
	// Read first, and write only a missing marker: Redis full at maxmemory (noeviction)
	// refuses SETNX even when the key exists, and an unconditional one made every reading,
	// and so every subscription, fail while reads and pub/sub still worked.
	epoch, err := s.client.Get(ctx, s.epoch).Result()
	made := false
	switch {
	case errors.Is(err, redis.Nil):
		var id [8]byte
		_, _ = rand.Read(id[:])
		var setNX *redis.BoolCmd
		var cur *redis.StringCmd
		cmds, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
			setNX = p.SetNX(ctx, s.epoch, hex.EncodeToString(id[:]), 0)
			cur = p.Get(ctx, s.epoch)
			return nil
		})
		if err != nil {
			return refusedInTransaction(cmds, err)
		}
		made, epoch = setNX.Val(), cur.Val()
	case err != nil:
		return err
	}
	lost := made || (s.seenEpoch != "" && epoch != s.seenEpoch)
	if lost {
		if err := s.republish(ctx); err != nil {
			return err // seenEpoch unchanged: the next reload tries again
		}
	}
	s.seenEpoch = epoch
	return nil
}

// republish adds the detector's active detections (not shadow ones) to the set, keeping a
// an end already there, and asks the other instances to reload.
func (s *SharedBans) republish(ctx context.Context) error {
	ds := s.det.Detections(s.maxBans)
	zs := make([]redis.Z, 0, min(len(ds), republishChunk))
	flush := func() error {
		if len(zs) == 0 {
			return nil
		}
		err := s.client.ZAddNX(ctx, s.key, zs...).Err()
		zs = zs[:0]
		return err
	}
	for _, d := range ds {
		if d.Shadow {
			continue
		}
		zs = append(zs, redis.Z{Score: float64(d.Until.UnixMilli()), Member: d.Key()})
		if len(zs) == republishChunk {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if err := s.client.ZRemRangeByRank(ctx, s.key, 0, int64(-s.maxBans-1)).Err(); err != nil {
		return err
	}
	payload, _ := json.Marshal(banMessage{Op: "reload", Origin: s.origin})
	return s.client.Publish(ctx, s.channel, payload).Err()
}

// refusedInTransaction is why a transaction failed: when Redis refused a command as it was
// queued (OOM at maxmemory with noeviction, an ACL's NOPERM on a key), EXEC only answers
// EXECABORT ("Transaction discarded because of previous errors"), which names no cause; the
// refused command's own error does.
func refusedInTransaction(cmds []redis.Cmder, err error) error {
	if !redis.HasErrorPrefix(err, "EXECABORT") {
		return err
	}
	for _, cmd := range cmds {
		if cerr := cmd.Err(); cerr != nil && !redis.HasErrorPrefix(cerr, "EXECABORT") {
			return cerr
		}
	}
	return err
}
