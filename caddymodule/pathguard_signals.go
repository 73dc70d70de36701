package caddymodule

import (
	"net/http"

	"github.com/swarmsec/caddy-hardening/ipclass"
)

// responseSignal is the signal an answer of path_guard's route sends the detector, if any.
// Only what a reader does not cause counts (the detector then counts bursts of it, not each):
//   - 404: not_found, unless the path names a static resource (ipclass.StaticResource): an old
//     page's deleted images, a browser's apple-touch-icon guesses; or one clients ask for by
//     convention (ipclass.RoutinePath): /robots.txt, /.well-known/*;
//   - 401, 403: auth_failure, only for a request that carried credentials
//     (presentsCredentials): a logged-out page's session check is answered 401 without
//     anyone failing to authenticate.
func responseSignal(r *http.Request, status int) (ipclass.Signal, bool) {
	switch status {
	case http.StatusNotFound:
		return ipclass.SignalNotFound, !ipclass.StaticResource(r.URL.Path) && !ipclass.RoutinePath(r.URL.Path)
	case http.StatusUnauthorized, http.StatusForbidden:
		return ipclass.SignalAuthFailure, presentsCredentials(r)
	}
	return 0, false
}

// presentsCredentials reports whether the request could have failed to authenticate: it
// carries an Authorization header (Basic, Bearer, ...), or it is a POST, PUT or PATCH, the
// methods a login form or API sends its credentials with (in the body, out of sight here).
// A GET or HEAD with only cookies is a page view, logged in or not.
func presentsCredentials(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" {
		return true
	}
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		return true
	}
	return false
}
