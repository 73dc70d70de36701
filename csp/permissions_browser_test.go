package csp

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestBrowserKnowsThePermissionsFeatures loads a page whose Permissions-Policy names every
// feature of chromiumPermissionsFeatures, plus a misspelt one, in the installed Chromium and
// reads its console: each listed name must be recognized, and the misspelt one reported
// ("Unrecognized feature"). When Chromium drops a feature, this test names it.
func TestBrowserKnowsThePermissionsFeatures(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	bin := testenv.Chromium(t)
	var members []string
	for _, name := range append(slices.Clone(chromiumPermissionsFeatures), "camra") {
		members = append(members, name+"=()")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Permissions-Policy", strings.Join(members, ", "))
		_, _ = fmt.Fprint(w, "<!doctype html><p>ok")
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--enable-logging=stderr", "--v=0", "--virtual-time-budget=2000",
		"--dump-dom", srv.URL)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	var unrecognized []string
	for _, m := range regexp.MustCompile(`Unrecognized feature: '([^']*)'`).FindAllStringSubmatch(stderr.String(), -1) {
		unrecognized = append(unrecognized, m[1])
	}
	if !slices.Equal(unrecognized, []string{"camra"}) {
		t.Fatalf("Chromium's unrecognized features: %q, want only [camra] (update chromiumPermissionsFeatures)", unrecognized)
	}
}
