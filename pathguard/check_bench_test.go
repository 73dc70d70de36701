package pathguard

import "testing"

func benchCheck(b *testing.B, paths []string) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = Check(paths[i%len(paths)], Options{})
	}
}

// BenchmarkCheckTypical: paths of an ordinary web app and API.
func BenchmarkCheckTypical(b *testing.B) {
	benchCheck(b, []string{"/", "/api/v1/users/123", "/static/app.9f8e7d.css", "/assets/img/logo@2x.png", "/a..b.txt", "/caf%C3%A9/menu"})
}

// BenchmarkCheckHostile: traversal attempts in several encodings.
func BenchmarkCheckHostile(b *testing.B) {
	benchCheck(b, []string{"/static/../../etc/passwd", "/static/%2e%2e%2f%2e%2e%2fsecret", "/static/%252e%252e/%252e%252e/x",
		"/static/%c0%ae%c0%ae/x", "/static/..;/x", "/c:/windows/win.ini"})
}
