package ipclass

import "testing"

func TestProbeMatcher(t *testing.T) {
	m, err := NewProbeMatcher(append(DefaultProbePaths, "*.php", "*/backup*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/.env", "/.ENV.production", "/.git/config", "//.git/HEAD", "/static/../.env",
		"/wp-login.php", "/WP-ADMIN/setup", "/index.php", "/x/backup.zip", "/cgi-bin/luci", "/.aws/credentials"} {
		if !m.Match(p) {
			t.Errorf("%s is not a probe", p)
		}
	}
	for _, p := range []string{"/", "/api/env", "/environment", "/github/x", "/admin", "/static/app.js", "/php", ""} {
		if m.Match(p) {
			t.Errorf("%s is a probe", p)
		}
	}
	for _, bad := range []string{"", "*", "env", "/a*b", "**"} {
		if _, err := NewProbeMatcher([]string{bad}); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
	if n := testing.AllocsPerRun(100, func() { m.Match("/api/v1/Users/123") }); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
}
