package csp

import (
	"io"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchPage is about 10 MB of HTML shaped like a real page: text, links with attributes,
// marked and unmarked scripts, styles and comments.
var benchPage = func() []byte {
	unit := `<div class="card" id="c1"><h2>Title</h2><p>Some text with <a href="/x?y=1" rel="nofollow">a link</a> and more words to read.</p>` +
		`<script nonce="` + testPH + `">window.x = 1;</script><script src="/app.js"></script>` +
		`<link rel="stylesheet" href="/a.css"><style>.card{color:red}</style><!-- a comment --><img src="/i.png" alt="x"></div>` + "\n"
	return []byte(strings.Repeat(unit, 10<<20/len(unit)))
}()

// benchmarkInjector runs mode over benchPage in 32 KiB writes; wide puts the redactors of the
// placeholder's UTF-16 and UTF-32 forms in front of it, as security_headers runs placeholder
// mode.
func benchmarkInjector(b *testing.B, mode Mode, ph string, wide bool) {
	const chunk = 32 << 10 // what file_server and reverse_proxy write at a time
	inj := new(Injector)
	var redactors []Injector
	if wide {
		redactors = make([]Injector, WideFormCount)
	}
	forms := WideForms(ph)
	b.SetBytes(int64(len(benchPage)))
	b.ReportAllocs()
	cpu0 := processCPU()
	n := 0
	for b.Loop() {
		n++
		if err := inj.Reset(io.Discard, mode, testNonce, ph); err != nil {
			b.Fatal(err)
		}
		var w io.Writer = inj
		for i := range redactors {
			if err := redactors[i].Reset(w, Redact, "", forms[i]); err != nil {
				b.Fatal(err)
			}
			w = &redactors[i]
		}
		for p := benchPage; len(p) > 0; {
			n := min(chunk, len(p))
			_, _ = w.Write(p[:n])
			p = p[n:]
		}
		for i := len(redactors) - 1; i >= 0; i-- {
			_ = redactors[i].Close()
		}
		_ = inj.Close()
	}
	// MB per second of this process's CPU time: what the injector costs, unaffected by other
	// load on a shared machine (wall-clock MB/s above is not).
	if cpu := processCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(n*len(benchPage))/1e6/cpu.Seconds(), "MB/cpu-s")
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkInjectorPlaceholder10MB: placeholder mode over a 10 MB page in 32 KiB writes.
func BenchmarkInjectorPlaceholder10MB(b *testing.B) { benchmarkInjector(b, Placeholder, testPH, false) }

// BenchmarkInjectorTags10MB: tags mode over the same page.
func BenchmarkInjectorTags10MB(b *testing.B) { benchmarkInjector(b, Tags, "", false) }

// BenchmarkNonce: one nonce from crypto/rand.
func BenchmarkNonce(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NewNonce()
	}
}

// BenchmarkRenderStrict: the strict preset's header value with a fresh nonce.
func BenchmarkRenderStrict(b *testing.B) {
	p, _ := Preset(PresetStrict)
	tpl := p.Compile()
	b.ReportAllocs()
	for b.Loop() {
		_ = tpl.Render(testNonce)
	}
}

// BenchmarkInjectorPlaceholderWide10MB: placeholder mode behind the redactors of the
// placeholder's UTF-16 and UTF-32 forms, as security_headers runs it.
func BenchmarkInjectorPlaceholderWide10MB(b *testing.B) {
	benchmarkInjector(b, Placeholder, testPH, true)
}
