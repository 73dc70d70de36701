// Package pagetest drives the dashboard page in Debian's Chromium (playwright-core from npm,
// see testenv.RunPlaywright) for the tests of the page (against the fixture) and of the
// Caddy routes (caddymodule). browser.js looks; the tests decide what is right.
package pagetest

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

//go:embed browser.js
var browserJS []byte

// Options of one browser run (browser.js documents each).
type Options struct {
	URL            string `json:"url"`
	Key            string `json:"key"`
	MinUpdates     int    `json:"minUpdates,omitempty"`
	Screenshot     string `json:"screenshot,omitempty"`
	ScreenshotDark string `json:"screenshotDark,omitempty"`
	SwitchRange    bool   `json:"switchRange,omitempty"`
	SwitchScope    bool   `json:"switchScope,omitempty"`
	Logout         bool   `json:"logout,omitempty"`
}

// Result is what the browser saw.
type Result struct {
	Console    []Console         `json:"console"`
	PageErrors []string          `json:"pageErrors"`
	CSP        []map[string]any  `json:"csp"`
	Requests   []string          `json:"requests"`
	Data       []DataResponse    `json:"data"`
	Phases     map[string]*Facts `json:"phases"`
	Hover      *Hover            `json:"hover"`
	Keyboard   *Keyboard         `json:"keyboard"`
	// KeyboardAfterRefresh is the same after the next data refresh redrew the chart.
	KeyboardAfterRefresh *Keyboard `json:"keyboardAfterRefresh"`
}

// Keyboard is the tooltip after focusing the rate-limit chart and pressing End, ArrowLeft.
type Keyboard struct {
	Visible bool   `json:"visible"`
	Text    string `json:"text"`
	Cursor  string `json:"cursor"`
	Focused bool   `json:"focused"`
}

// Console is a console message of level error or warning.
type Console struct {
	Type string `json:"type"`
	Text string `json:"text"`
	URL  string `json:"url"`
}

// DataResponse is one answer of <mount>/dashboard/data.
type DataResponse struct {
	URL           string `json:"url"`
	Status        int    `json:"status"`
	Authorization string `json:"authorization"`
}

// Facts is the page at one moment.
type Facts struct {
	State              string                `json:"state"`
	Updates            int                   `json:"updates"`
	LoginVisible       bool                  `json:"loginVisible"`
	DashVisible        bool                  `json:"dashVisible"`
	LogoutVisible      bool                  `json:"logoutVisible"`
	ScopeSwitchVisible bool                  `json:"scopeSwitchVisible"`
	BannerVisible      bool                  `json:"bannerVisible"`
	Banner             []string              `json:"banner"`
	Who                string                `json:"who"`
	Text               string                `json:"text"`
	Charts             map[string]Chart      `json:"charts"`
	Tables             map[string][][]string `json:"tables"`
	Stats              map[string]string     `json:"stats"`
	StoredKey          *string               `json:"storedKey"`
	Scripts            int                   `json:"scripts"`
	Images             int                   `json:"images"`
	SVGs               int                   `json:"svgs"`
}

// Chart is one figure: its buckets and its series as drawn.
type Chart struct {
	Buckets int      `json:"buckets"`
	Empty   bool     `json:"empty"`
	Series  []Series `json:"series"`
	Ticks   []string `json:"ticks"`
	Legend  []string `json:"legend"`
	SVGs    int      `json:"svgs"`
}

// Series is one drawn series: the sum of its values, its non-zero and non-null points, and
// the SVG shapes drawn for it.
type Series struct {
	Name    string  `json:"name"`
	Sum     float64 `json:"sum"`
	NonZero int     `json:"nonzero"`
	Points  int     `json:"points"`
	Paths   int     `json:"paths"`
}

// Hover is the tooltip after the pointer moved over the rate-limit chart.
type Hover struct {
	Visible bool   `json:"visible"`
	Text    string `json:"text"`
	Guide   string `json:"guide"`
}

// SeriesByName returns the chart's series by name.
func (c Chart) SeriesByName() map[string]Series {
	m := map[string]Series{}
	for _, s := range c.Series {
		m[s.Name] = s
	}
	return m
}

// Run drives the page once; the test fails if the script does. Skipped with -short.
func Run(t testing.TB, o Options) *Result {
	t.Helper()
	if testing.Short() {
		t.Skip("drives Chromium; skipped with -short")
	}
	script := filepath.Join(t.TempDir(), "browser.js")
	if err := os.WriteFile(script, browserJS, 0o644); err != nil {
		t.Fatal(err)
	}
	arg, _ := json.Marshal(o)
	out := testenv.RunPlaywright(t, script, string(arg))
	r := new(Result)
	if err := json.Unmarshal(out, r); err != nil {
		t.Fatalf("browser.js printed %q: %v", out, err)
	}
	return r
}

// expectedLoad is Chromium's console line for a fetch answered with an error status. The
// page meets two by design: 401 (no key yet, or a wrong one: the login prompt follows) and
// 400 for scope=all without Redis (the scope switch hides).
var expectedLoad = regexp.MustCompile(`^Failed to load resource: the server responded with a status of (401|400) `)

// Problems lists what must never happen in a run: console errors (other than the expected
// 401/400 answers of the data endpoint), uncaught exceptions, CSP violations, a request to
// another origin, the key in any URL, a data request that carried a key other than key.
func (r *Result) Problems(pageURL, key string) []string {
	var p []string
	origin := originOf(pageURL)
	for _, c := range r.Console {
		if c.Type != "error" {
			continue
		}
		if m := expectedLoad.FindStringSubmatch(c.Text); m != nil && r.answered(c.URL, m[1]) {
			continue
		}
		p = append(p, fmt.Sprintf("console error: %s (%s)", c.Text, c.URL))
	}
	for _, e := range r.PageErrors {
		p = append(p, "uncaught exception: "+e)
	}
	for _, v := range r.CSP {
		p = append(p, fmt.Sprintf("CSP violation: %v", v))
	}
	for _, u := range r.Requests {
		if originOf(u) != origin && !strings.HasPrefix(u, "data:") {
			p = append(p, "a request to another origin: "+u)
		}
		if key != "" && strings.Contains(u, key) {
			p = append(p, "the key in a URL: "+u)
		}
		if key != "" && strings.Contains(u, url.QueryEscape(key)) {
			p = append(p, "the key (escaped) in a URL: "+u)
		}
	}
	for _, d := range r.Data {
		if d.Authorization != "" && d.Authorization != "Bearer "+key {
			p = append(p, fmt.Sprintf("a data request sent Authorization %q", d.Authorization))
		}
	}
	return p
}

// answered reports whether the data endpoint answered u with this status, and the status
// was one the page expects: 401, or 400 to scope=all.
func (r *Result) answered(u, status string) bool {
	for _, d := range r.Data {
		if d.URL != u || fmt.Sprint(d.Status) != status {
			continue
		}
		if status == "400" && !strings.Contains(u, "scope=all") {
			return false
		}
		return true
	}
	return false
}

func originOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return p.Scheme + "://" + p.Host
}

// ArtifactDir is where a test writes screenshots: $HARDENING_ARTIFACTS when set (CI keeps
// it), else a temporary folder.
func ArtifactDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("HARDENING_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// CopyFile copies a file (a screenshot into docs/).
func CopyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
