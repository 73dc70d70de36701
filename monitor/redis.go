package monitor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/swarmsec/caddy-hardening/internal/redisconn"
)

// RedisChecker sends PING and asks the server its role (HELLO, Redis 6.2 and later): a replica
// answers PING but refuses every write (READONLY), so it fails the check, as a stale URL, a
// Sentinel setup naming a demoted master or a stale Cluster slot map would otherwise pass. On a
// Cluster it checks every master, so one lost shard shows. A server that cannot say its role
// (before 6.2, or an ACL without HELLO) is judged by PING alone.
//
// A failure that shows a configuration mistake (refused credentials or ACL, a TLS certificate
// that does not verify, TLS against a plain port or plain against a TLS-only port) is named as
// the hardening app's startup names it, before the driver's own text.
type RedisChecker struct {
	Client redis.UniversalClient
	// Conn is how Client was configured (TLS or not, the mode), to name a failure's cause.
	Conn redisconn.Options
}

// Check implements Checker.
func (r RedisChecker) Check(ctx context.Context) Outcome {
	if cc, ok := r.Client.(*redis.ClusterClient); ok {
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			if err := pingPrimary(ctx, c); err != nil {
				return fmt.Errorf("%s: %w", c.Options().Addr, err)
			}
			return nil
		})
		if err != nil {
			return redisFailed(err, r.Conn)
		}
		return Outcome{Status: Pass}
	}
	if err := pingPrimary(ctx, r.Client); err != nil {
		return redisFailed(err, r.Conn)
	}
	return Outcome{Status: Pass}
}

// pingPrimary sends PING, then fails when HELLO names the server a replica.
func pingPrimary(ctx context.Context, c redisDoer) error {
	if err := c.Ping(ctx).Err(); err != nil {
		return err
	}
	if role := redisconn.ReplicaRole(ctx, c); role != "" {
		return errors.New("the server is a read-only replica (HELLO role " + role + "); expected a primary, which takes writes")
	}
	return nil
}

// redisDoer is what pingPrimary needs of a client (a node of a Cluster, or any client).
type redisDoer interface {
	Ping(ctx context.Context) *redis.StatusCmd
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// redisFailed is the outcome of a Redis command that returned err. A client closed under the
// probe gives no result: only its configuration closes it, while that configuration is torn
// down (the shared client of a reload that failed), and the dependency said nothing. A
// configuration mistake the error reveals is named first (redisconn.Diagnose).
func redisFailed(err error, conn redisconn.Options) Outcome {
	if errors.Is(err, redis.ErrClosed) {
		return Outcome{Abandoned: true}
	}
	if d := redisconn.Diagnose(err, conn); d.Cause.Mistake() {
		return Failed(fmt.Errorf("%s: %w", d, err))
	}
	return Failed(err)
}

// WorkerChecker watches a Celery-compatible worker pool through its Redis broker: the backlog
// of a queue (LLEN, the list Celery's Redis transport uses) and/or the age of a heartbeat key
// that the workers refresh.
type WorkerChecker struct {
	Client redis.UniversalClient
	// Conn is how Client was configured, to name a failure's cause (see RedisChecker).
	Conn redisconn.Options
	// Queue is the list whose length is the backlog; empty to skip the backlog check.
	Queue string
	// MaxBacklog is the longest acceptable backlog (0: only observed, never judged).
	MaxBacklog int64
	// BacklogStatus is what a backlog over MaxBacklog reports: Warn (default) or Fail.
	BacklogStatus Status
	// HeartbeatKey holds the time of the last heartbeat: Unix seconds (integer or fractional,
	// as Python's time.time()) or RFC 3339. Empty to skip the heartbeat check.
	HeartbeatKey string
	// MaxAge is the oldest acceptable heartbeat; an older or missing one fails.
	MaxAge time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Check implements Checker.
func (w WorkerChecker) Check(ctx context.Context) Outcome {
	out := Outcome{Status: Pass}
	var problems []string
	if w.Queue != "" {
		n, err := w.Client.LLen(ctx, w.Queue).Result()
		if err != nil {
			return redisFailed(fmt.Errorf("LLEN %s: %w", w.Queue, err), w.Conn)
		}
		out.Observed = append(out.Observed, Observation{Name: "backlog", Value: n, Unit: "messages"})
		if w.MaxBacklog > 0 && n > w.MaxBacklog {
			st := w.BacklogStatus
			if st != Fail {
				st = Warn
			}
			out.Status = Worse(out.Status, st)
			problems = append(problems, fmt.Sprintf("queue %s backlog %d is over %d", w.Queue, n, w.MaxBacklog))
		}
	}
	if w.HeartbeatKey != "" {
		age, err := w.heartbeatAge(ctx)
		if err != nil {
			return redisFailed(err, w.Conn)
		}
		out.Observed = append(out.Observed, Observation{Name: "heartbeatAge", Value: math.Round(age.Seconds()*1000) / 1000, Unit: "s"})
		if w.MaxAge > 0 && age > w.MaxAge {
			out.Status = Fail
			problems = append(problems, fmt.Sprintf("last heartbeat %s ago, older than %s", age.Round(time.Second), w.MaxAge))
		}
	}
	out.Output = strings.Join(problems, "; ")
	return out
}

func (w WorkerChecker) heartbeatAge(ctx context.Context) (time.Duration, error) {
	v, err := w.Client.Get(ctx, w.HeartbeatKey).Result()
	if errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("no heartbeat: key %s does not exist", w.HeartbeatKey)
	}
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", w.HeartbeatKey, err)
	}
	t, err := parseHeartbeat(v)
	if err != nil {
		return 0, fmt.Errorf("heartbeat key %s: %w", w.HeartbeatKey, err)
	}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	age := now().Sub(t)
	// A heartbeat ahead of this clock is skew, up to a point: one further ahead than the age
	// tolerated behind never ages, so the check would pass for ever after the workers stop.
	// Milliseconds (Date.now(), time.time()*1000) or nanoseconds read as seconds are that.
	skew := w.MaxAge
	if skew <= 0 {
		skew = time.Minute
	}
	if age < -skew { // not -age > skew: Sub saturates at the minimum Duration, whose negation overflows
		why := "the workers' clock is wrong, or"
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f > unixSecondsCeiling {
			why = "it looks written in milliseconds or nanoseconds;"
		}
		return 0, fmt.Errorf("heartbeat key %s holds a time %s in the future (more than %s ahead): %s expected Unix seconds (Python's time.time()) or RFC 3339", w.HeartbeatKey, roundAhead(age), skew, why)
	}
	return max(0, age), nil
}

// unixSecondsCeiling is 1e11 s, the year 5138: a larger Unix time is in another unit.
const unixSecondsCeiling = 1e11

// roundAhead shows how far ahead a heartbeat of that (negative) age is; Sub saturates, so a
// thousand-year lead is not a duration worth printing.
func roundAhead(age time.Duration) string {
	if age <= -100*365*24*time.Hour {
		return "centuries"
	}
	return (-age).Round(time.Second).String()
}

// parseHeartbeat reads Unix seconds (fractional allowed) or an RFC 3339 time.
func parseHeartbeat(v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 && !math.IsInf(f, 0) {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if len(v) > 40 {
		v = v[:40] + "..."
	}
	return time.Time{}, fmt.Errorf("value %q is neither Unix seconds nor RFC 3339", v)
}
