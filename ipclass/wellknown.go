package ipclass

import "strings"

// routinePaths are the paths clients request by convention whether or not the site has them:
// crawlers fetch /robots.txt, /sitemap.xml, /ads.txt and /app-ads.txt before anything else;
// browsers fetch /browserconfig.xml (Edge's tiles) and RFC 8615's /.well-known/* on their own
// (password managers' /.well-known/change-password, Chrome's traffic-advice, DevTools'
// appspecific/com.chrome.devtools.json, mobile apps' assetlinks.json and
// apple-app-site-association, security.txt). A missing one says nothing about who asked, and
// behind a NAT each of them took a slot of every user's not_found allowance.
var routinePaths = map[string]struct{}{
	"/robots.txt": {}, "/sitemap.xml": {}, "/ads.txt": {}, "/app-ads.txt": {},
	"/humans.txt": {}, "/security.txt": {}, "/browserconfig.xml": {},
}

// RoutinePath reports whether the request path is one clients request by convention (see
// routinePaths) or under /.well-known/: a 404 for it is no not_found signal. Exact paths, case
// included, as clients send them; a probe path (probe_paths) scores as probe whatever this says.
func RoutinePath(path string) bool {
	if strings.HasPrefix(path, "/.well-known/") {
		return true
	}
	_, ok := routinePaths[path]
	return ok
}
