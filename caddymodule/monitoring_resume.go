package caddymodule

import (
	"slices"
	"sync"

	"github.com/swarmsec/caddy-hardening/monitor"
)

// liveChecks indexes the pooled checks by what they watch: type, name and target. The pool is
// keyed by a check's whole configuration, so a reload that only tunes a check (its interval,
// timeout, failures_before_down) makes a new one; without its predecessor's result it would be
// down until its first run ends, and a critical one would fail /ready on every instance that
// reloads, at once.
var liveChecks = struct {
	mu sync.Mutex
	m  map[string][]*monitor.Check
}{m: map[string][]*monitor.Check{}}

func checkIdentity(cfg monitor.Config) string {
	return cfg.Type + "\x00" + cfg.Name + "\x00" + cfg.Target
}

// adoptCheck registers a new check and resumes it from the latest result of a live check with
// the same name and target (the one it replaces; the old configuration is still running while
// the new one provisions).
func adoptCheck(c *monitor.Check) {
	id := checkIdentity(c.Config())
	liveChecks.mu.Lock()
	defer liveChecks.mu.Unlock()
	var prev monitor.State
	for _, o := range liveChecks.m[id] {
		if s := o.State(); s.Checked && (!prev.Checked || s.LastCheck.After(prev.LastCheck)) {
			prev = s
		}
	}
	c.Resume(prev)
	liveChecks.m[id] = append(liveChecks.m[id], c)
}

// dropCheck unregisters a check that stops.
func dropCheck(c *monitor.Check) {
	id := checkIdentity(c.Config())
	liveChecks.mu.Lock()
	defer liveChecks.mu.Unlock()
	rest := slices.DeleteFunc(liveChecks.m[id], func(o *monitor.Check) bool { return o == c })
	if len(rest) == 0 {
		delete(liveChecks.m, id)
	} else {
		liveChecks.m[id] = rest
	}
}
