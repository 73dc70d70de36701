package observatory

import "testing"

func BenchmarkAnalyze(b *testing.B) {
	s := scanOf(goodHeaders(), `<html><script src="/app.js" integrity="sha384-x"></script><script src="https://cdn.jsdelivr.net/x.js"></script></html>`,
		"sessionid=1; Secure; HttpOnly; SameSite=Lax")
	b.ReportAllocs()
	for b.Loop() {
		_ = Analyze(s)
	}
}
