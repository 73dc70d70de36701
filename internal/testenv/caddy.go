package testenv

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the Caddyfile adapter
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
	c.t.Helper()
	cfg, err := Adapt(caddyfile)
	if err != nil {
		return err
	}
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
func (c *Caddy) Logs() []LogEntry { return readLogEntries(c.LogFile) }

func (c *Caddy) logText() string {
	b, _ := os.ReadFile(c.LogFile)
	return string(b)
}

// LogEntry is one JSON log line: its level, logger, message, and every field.
type LogEntry map[string]any

// Msg is the entry's message.
func (e LogEntry) Msg() string { s, _ := e["msg"].(string); return s }

// Level is the entry's level (debug, info, warn, error).
func (e LogEntry) Level() string { s, _ := e["level"].(string); return s }

// Logger is the entry's logger name.
func (e LogEntry) Logger() string { s, _ := e["logger"].(string); return s }

// Str is a string field of the entry.
func (e LogEntry) Str(key string) string { s, _ := e[key].(string); return s }

// Filter keeps the entries for which keep says true.
func Filter(entries []LogEntry, keep func(LogEntry) bool) []LogEntry {
	var out []LogEntry
	for _, e := range entries {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

func readLogEntries(path string) []LogEntry {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []LogEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		var e LogEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}
