package ipclass

import "testing"

func TestRoutinePath(t *testing.T) {
	for path, want := range map[string]bool{
		"/robots.txt":                  true,
		"/sitemap.xml":                 true,
		"/ads.txt":                     true,
		"/.well-known/change-password": true,
		"/.well-known/traffic-advice":  true,
		"/.well-known/appspecific/com.chrome.devtools.json": true,
		"/.well-known":      false, // no such resource: a directory name
		"/robots.txt.bak":   false,
		"/admin/robots.txt": false,
		"/ROBOTS.TXT":       false,
		"/.env":             false,
		"/":                 false,
	} {
		if got := RoutinePath(path); got != want {
			t.Errorf("RoutinePath(%q) = %v, want %v", path, got, want)
		}
	}
}
