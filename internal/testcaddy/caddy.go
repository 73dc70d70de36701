// Package testcaddy runs Caddy in the test process, loaded from a Caddyfile, with its logs
// captured as JSON. There is one in-process Caddy per test binary: tests that use it run one
// after another.
package testcaddy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the Caddyfile adapter

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// inProcess serialises in-process Caddy: there is one per test binary.
var inProcess sync.Mutex

// Caddy is the in-process Caddy of one test, loaded from a Caddyfile. Its logs go, as JSON at
// DEBUG level, to LogFile unless the Caddyfile configures logging itself. Unless the Caddyfile
// sets `admin`, the admin endpoint is off; the config is never autosaved.
type Caddy struct {
	t       testing.TB
	LogFile string
}

// StartCaddy adapts the Caddyfile and runs it in this process; the test fails on an adapt or
// load error. Caddy stops when the test ends.
func StartCaddy(t testing.TB, caddyfile string) *Caddy {
	t.Helper()
	c, err := TryStartCaddy(t, caddyfile)
	if err != nil {
		t.Fatalf("starting Caddy: %v", err)
	}
	return c
}

// TryStartCaddy is StartCaddy that returns the load error, for tests of refused configs.
func TryStartCaddy(t testing.TB, caddyfile string) (*Caddy, error) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a real Caddy; skipped with -short")
	}
	inProcess.Lock()
	c := &Caddy{t: t, LogFile: filepath.Join(t.TempDir(), "caddy.log")}
	t.Cleanup(func() {
		_ = caddy.Stop()
		if t.Failed() {
			t.Logf("Caddy log:\n%s", c.logText())
		}
		inProcess.Unlock()
	})
	return c, c.Load(caddyfile)
}

// Load adapts and loads a Caddyfile into the running Caddy, as `caddy reload` does.
func (c *Caddy) Load(caddyfile string) error {
	cfg, err := Adapt(caddyfile)
	if err != nil {
		return err
	}
	return c.load(cfg)
}

// LoadJSON loads a JSON config into the running Caddy.
func (c *Caddy) LoadJSON(raw string) error {
	var cfg map[string]any
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return err
	}
	return c.load(cfg)
}

func (c *Caddy) load(cfg map[string]any) error {
	if cfg["admin"] == nil {
		cfg["admin"] = map[string]any{"disabled": true}
	}
	admin := cfg["admin"].(map[string]any)
	admin["config"] = map[string]any{"persist": false}
	if cfg["logging"] == nil {
		cfg["logging"] = map[string]any{"logs": map[string]any{"default": map[string]any{
			"level":   "DEBUG",
			"writer":  map[string]any{"output": "file", "filename": c.LogFile},
			"encoder": map[string]any{"format": "json"},
		}}}
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	return caddy.Load(raw, true)
}

// Adapt turns a Caddyfile into Caddy's JSON config, as a map. Adapter warnings are errors.
func Adapt(caddyfile string) (map[string]any, error) {
	if strings.TrimSpace(caddyfile) == "" {
		return map[string]any{}, nil
	}
	raw, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return nil, err
	}
	if len(warnings) > 0 {
		return nil, &adaptWarning{warnings}
	}
	var cfg map[string]any
	err = json.Unmarshal(raw, &cfg)
	return cfg, err
}

type adaptWarning struct{ w []caddyconfig.Warning }

func (a *adaptWarning) Error() string {
	var b strings.Builder
	for _, w := range a.w {
		b.WriteString(w.String() + "; ")
	}
	return "adapt warnings: " + b.String()
}

// Logs returns Caddy's log entries so far, decoded.
func (c *Caddy) Logs() []testenv.LogEntry { return testenv.ReadLogFile(c.LogFile) }

func (c *Caddy) logText() string {
	b, _ := os.ReadFile(c.LogFile)
	return string(b)
}
