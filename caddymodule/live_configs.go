package caddymodule

import (
	"slices"
	"sync"
)

// liveConfigs are the configurations (hardening apps) started and not cleaned up yet, oldest
// first. During a reload the old and the new one are both here; a new one that fails after
// its start (another app refused to start) leaves again and the old one speaks once more.
// After each change, settle points what the configurations share at the live ones.
type liveConfigs struct {
	mu     sync.Mutex
	apps   []*App
	settle func(apps []*App) // under mu; also with no configuration left
}

// any reports whether a configuration is live.
func (l *liveConfigs) any() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.apps) > 0
}

func (l *liveConfigs) started(a *App) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.apps = append(l.apps, a)
	l.settle(l.apps)
}

func (l *liveConfigs) cleanedUp(a *App) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i := slices.Index(l.apps, a); i >= 0 {
		l.apps = slices.Delete(l.apps, i, i+1)
		l.settle(l.apps)
	}
}
