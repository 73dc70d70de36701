package ipclass

import (
	"net/netip"
	"testing"
)

func TestStaticResource(t *testing.T) {
	for path, want := range map[string]bool{
		"/wp-content/uploads/2019/05/IMG_7.jpg": true,
		"/IMG_7.JPG":                            true,
		"/apple-touch-icon-precomposed.png":     true,
		"/favicon.ico":                          true,
		"/_next/static/chunks/main.js":          true,
		"/fonts/inter.woff2":                    true,
		"/app.css.map":                          true,
		"/video/intro.webm":                     true,
		"/site.webmanifest":                     true,
		"/":                                     false,
		"/api/me":                               false,
		"/admin.php":                            false,
		"/backup.zip":                           false,
		"/config.json":                          false,
		"/.env":                                 false,
		"/robots.txt":                           false,
		"/static.jpg/admin":                     false, // the extension of a directory
		"/a.":                                   false,
		"/x.webmanifestx":                       false,
		"/.js":                                  true,
	} {
		if got := StaticResource(path); got != want {
			t.Errorf("StaticResource(%q) = %v, want %v", path, got, want)
		}
	}
}

func BenchmarkStaticResource(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = StaticResource("/wp-content/uploads/2019/05/IMG_7.JPG")
	}
}

func TestHoldsLoopback(t *testing.T) {
	for _, c := range []struct {
		addr string
		bits int
		want bool
	}{
		{"127.0.0.1", 64, true}, {"127.255.0.9", 64, true}, {"::ffff:127.0.0.1", 64, true},
		{"::1", 128, true}, {"::", 64, true}, {"::", 128, false}, {"0:0:0:1::", 64, false},
		{"128.0.0.1", 64, false}, {"2001:db8::", 64, false},
	} {
		if got := HoldsLoopback(netip.MustParseAddr(c.addr), c.bits); got != c.want {
			t.Errorf("HoldsLoopback(%s, %d) = %v, want %v", c.addr, c.bits, got, c.want)
		}
	}
}
