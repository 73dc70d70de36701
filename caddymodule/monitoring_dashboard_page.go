package caddymodule

import (
	"fmt"
	"net/http"

	"github.com/swarmsec/caddy-hardening/csp"
)

// dashboardPage renders the page for a nonce. The page of package dashboard/page replaces this
// built-in shell when it is merged (dashboardPage = page.Render).
var dashboardPage = builtinDashboardPage

// dashboardCSP is the page's policy; %[1]s is the nonce.
const dashboardCSP = "default-src 'none'; script-src 'nonce-%[1]s'; style-src 'nonce-%[1]s'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// serveDashboardPage writes the page under its own CSP. When security_headers wraps the route,
// its nonce is the one the page carries: its HTML rewriting then keeps the page's nonces
// instead of stripping them, and our policy replaces its CSP header (a replaced value stays).
func serveDashboardPage(w http.ResponseWriter) error {
	nonce := ""
	if sw := findSecurityWriter(w); sw != nil {
		nonce = sw.nonce
	}
	if nonce == "" {
		nonce = csp.NewNonce()
	}
	h := w.Header()
	h.Set("Content-Security-Policy", fmt.Sprintf(dashboardCSP, nonce))
	h.Del("Content-Security-Policy-Report-Only")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Referrer-Policy", "no-referrer")
	return writeBody(w, http.StatusOK, dashboardPage(nonce))
}

// findSecurityWriter finds security_headers' writer among the wrappers of w.
func findSecurityWriter(w http.ResponseWriter) *securityWriter {
	for i := 0; i < 16 && w != nil; i++ {
		if sw, ok := w.(*securityWriter); ok {
			return sw
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		w = u.Unwrap()
	}
	return nil
}

// builtinDashboardPage is a minimal page (a sign-in prompt and the data as text) until the
// real page is merged.
func builtinDashboardPage(nonce string) []byte {
	return []byte(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>caddy-hardening dashboard</title>
<style nonce="` + nonce + `">body{font:14px system-ui,sans-serif;margin:2em}pre{white-space:pre-wrap}</style>
</head><body><h1>caddy-hardening</h1>
<form id="login" hidden><label>API key <input id="key" type="password" autocomplete="off"></label> <button>Sign in</button></form>
<pre id="out"></pre>
<script nonce="` + nonce + `">
(function () {
  var K = "hardening.dashboard.key", form = document.getElementById("login"), out = document.getElementById("out");
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    sessionStorage.setItem(K, document.getElementById("key").value);
    load();
  });
  function load() {
    var key = sessionStorage.getItem(K), h = {};
    if (key) { h.Authorization = "Bearer " + key; }
    fetch("dashboard/data", {headers: h, cache: "no-store"}).then(function (r) {
      if (r.status === 401) { form.hidden = false; out.textContent = ""; return null; }
      form.hidden = true;
      return r.json();
    }).then(function (d) {
      if (d) { out.textContent = d.instance + " " + d.current.status + "\n" + JSON.stringify(d.totals, null, 1); }
    });
  }
  load();
  setInterval(load, 5000);
})();
</script></body></html>
`)
}
