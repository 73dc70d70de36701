package caddymodule

import (
	"os"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// BenchmarkCheckExample is one `caddy hardening check` of Caddyfile.example after adapting:
// provision every module, collect the findings, clean up.
func BenchmarkCheckExample(b *testing.B) {
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		b.Fatal(err)
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if rep := CheckConfig(cfg); rep.Errors != 0 {
			b.Fatal(rep.Findings)
		}
	}
}
