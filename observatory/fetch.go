package observatory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/textcut"
)

// ScanOrigin is the Origin header a scan sends, as the Observatory does, so a server that
// reflects any origin shows it.
const ScanOrigin = "https://http-observatory.security.mozilla.org"

// Limits of one scan.
const (
	maxRedirects   = 10
	maxBody        = 2 << 20 // HTML read for SRI
	defaultTimeout = 10 * time.Second
)

// Fetcher retrieves what a scan grades.
type Fetcher struct {
	// Client sends the requests; its CheckRedirect is replaced (the fetcher follows
	// redirects itself to record them). Default: a client with a 10 s timeout.
	Client *http.Client
}

// CertError is the error of a scan whose https:// URL answered with a certificate the client
// does not trust: a browser would show its certificate error page, and the scan grades no other
// response in its place.
type CertError struct {
	URL string // the https:// URL whose certificate failed
	Err error  // the TLS verification error
}

func (e *CertError) Error() string {
	return e.URL + ": the certificate is not trusted: " + e.Err.Error()
}

func (e *CertError) Unwrap() error { return e.Err }

// certError is err as a *CertError for where when it is a certificate failure (the request's
// own wrapping, Get "...", is dropped: the URL leads the message), else err.
func certError(where string, err error) error {
	if !isCertError(err) {
		return err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return &CertError{URL: where, Err: err}
}

// RedirectError is a chain of redirects that reaches no page: it comes back to a URL it
// requested before with the same cookies (a loop), or goes on past maxRedirects. A browser
// stops with ERR_TOO_MANY_REDIRECTS.
type RedirectError struct {
	Chain []string // every URL requested, the first one first
	Loop  bool     // the last URL of Chain was requested before
}

// maxShownURL bounds each URL a message shows from a redirect: the server writes them.
const maxShownURL = 200

// ShownURL is u cut to maxShownURL bytes, with "..." when cut, for a message that quotes a
// URL a server wrote (a redirect's Location).
func ShownURL(u string) string {
	if cut := textcut.Cut(u, maxShownURL); len(cut) < len(u) {
		return cut + "..."
	}
	return u
}

func (e *RedirectError) Error() string {
	what := fmt.Sprintf("more than %d redirects", maxRedirects)
	if e.Loop {
		what = "the redirects loop"
	}
	shown := make([]string, len(e.Chain))
	for i, u := range e.Chain {
		shown[i] = ShownURL(u)
	}
	return fmt.Sprintf("%s: %s: %s (a browser stops with ERR_TOO_MANY_REDIRECTS): check the redirect rules of "+
		"these URLs; a common cause is an app behind a proxy that terminates TLS, which redirects to https:// "+
		"every request the proxy sends it over http:// (have it read X-Forwarded-Proto)", shown[0], what, strings.Join(shown, " → "))
}

// redirectError is why the redirect's target where could not be fetched: a *CertError, or
// err led by where and what it is.
func redirectError(where string, err error) error {
	where = ShownURL(where)
	if isCertError(err) {
		return certError(where, err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%s (the redirect's target) cannot be fetched: %w", where, err)
}

// Fetch retrieves target: when it is http://, the redirect chain from it, and the response it
// ends on; when it is https://, that response, plus the chain from httpURL when given (the
// same host on port 80 when empty). An https:// target that cannot be fetched is an error (a
// *CertError for an untrusted certificate), never replaced by the http:// chain's response.
func (f *Fetcher) Fetch(ctx context.Context, target, httpURL string) (*Scan, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("the URL must be absolute, http:// or https://")
	}
	s := &Scan{Origin: ScanOrigin}
	start := target
	if u.Scheme == "https" {
		start = httpURL
		if start == "" {
			h := *u
			h.Scheme, h.Host = "http", u.Hostname()
			if strings.Contains(h.Host, ":") {
				h.Host = "[" + h.Host + "]"
			}
			start = h.String()
		}
	}
	httpsTarget := target
	if u.Scheme == "http" {
		h := *u
		h.Scheme = "https"
		h.Host = u.Hostname()
		if strings.Contains(h.Host, ":") {
			h.Host = "[" + h.Host + "]"
		}
		httpsTarget = h.String()
	}
	// From an http:// URL, the https:// fetch is needed when the http:// chain does not end
	// on a fetched https:// response; it starts once the chain has taken FallbackAfter, so a
	// host that answers neither costs one timeout, not two.
	var early *earlyFetch
	if u.Scheme == "http" {
		early = f.startEarly(ctx, httpsTarget)
		defer early.cancel()
	}
	chain, body, cerr := f.follow(ctx, start)
	var redirects *RedirectError
	if errors.As(cerr, &redirects) && u.Scheme == "http" {
		return nil, cerr // the URL asked for leads to no page: grading a redirect would mislead
	}
	for _, r := range chain {
		s.Cookies = append(s.Cookies, r.Header.Values("Set-Cookie")...)
	}
	s.HTTPChain = chain
	s.HTTPInvalidCert = isCertError(cerr)
	if n := len(chain); cerr != nil && n > 1 && chain[n-1].Status == 0 && chain[n-1].URL.Scheme == "https" {
		// A redirect to https:// that leads nowhere is no redirect to HTTPS for a visitor.
		s.RedirectErr = redirectError(chain[n-1].URL.String(), cerr)
	}
	if redirects != nil { // the http:// side of an https:// URL: its redirection test fails
		s.RedirectErr = cerr
	}
	if len(chain) > 0 && chain[len(chain)-1].URL.Scheme == "https" && cerr == nil {
		last := chain[len(chain)-1]
		s.Final, s.Body, s.HTTPS = &last, body, true
	}
	if s.Final == nil || u.Scheme == "https" {
		var hchain []Response
		var hbody []byte
		var herr error
		if early != nil {
			hchain, hbody, herr = early.result(ctx, f, httpsTarget)
		} else {
			hchain, hbody, herr = f.follow(ctx, httpsTarget)
		}
		switch {
		case herr == nil && len(hchain) > 0:
			last := hchain[len(hchain)-1]
			s.Final, s.Body, s.HTTPS = &last, hbody, last.URL.Scheme == "https"
			s.Cookies = nil
			for _, r := range append(chain, hchain...) {
				s.Cookies = append(s.Cookies, r.Header.Values("Set-Cookie")...)
			}
		case u.Scheme == "https": // the URL asked for: grading another would mislead
			failed := target
			if len(hchain) > 0 {
				failed = hchain[len(hchain)-1].URL.String()
			}
			return nil, certError(failed, herr)
		case isCertError(herr):
			s.InvalidCert = true
		}
	}
	if s.HTTPInvalidCert {
		s.InvalidCert = true
	}
	for i := len(chain) - 1; s.Final == nil && i >= 0; i-- {
		if chain[i].Status != 0 { // the last response that arrived
			last := chain[i]
			s.Final = &last
			if i == len(chain)-1 {
				s.Body = body
			}
		}
	}
	if s.Final == nil {
		if cerr != nil {
			return nil, cerr
		}
		return nil, errors.New("no response over HTTP or HTTPS")
	}
	return s, nil
}

// FallbackAfter is how long the http:// chain of an http:// URL runs before the https://
// fetch that may replace it starts beside it.
var FallbackAfter = time.Second

// earlyFetch is the https:// fetch of an http:// URL, started beside the http:// chain once
// that has taken FallbackAfter.
type earlyFetch struct {
	timer  *time.Timer
	done   chan struct{}
	cancel context.CancelFunc
	chain  []Response
	body   []byte
	err    error
}

func (f *Fetcher) startEarly(ctx context.Context, target string) *earlyFetch {
	ctx, cancel := context.WithCancel(ctx)
	e := &earlyFetch{done: make(chan struct{}), cancel: cancel}
	e.timer = time.AfterFunc(FallbackAfter, func() {
		defer close(e.done)
		e.chain, e.body, e.err = f.follow(ctx, target)
	})
	return e
}

// result is the early fetch's outcome: awaited when it has started, else fetched now.
func (e *earlyFetch) result(ctx context.Context, f *Fetcher, target string) ([]Response, []byte, error) {
	if e.timer.Stop() {
		return f.follow(ctx, target)
	}
	<-e.done
	return e.chain, e.body, e.err
}

// follow GETs rawURL and each Location after it, up to maxRedirects, returning every response
// and the last body (bounded).
func (f *Fetcher) follow(ctx context.Context, rawURL string) ([]Response, []byte, error) {
	client := http.Client{Timeout: defaultTimeout}
	if f.Client != nil {
		client = *f.Client
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	// Cookies are kept as a browser keeps them: a redirect that sets one and comes back to
	// the same URL is no loop when that URL answers otherwise with the cookie.
	client.Jar, _ = cookiejar.New(nil)
	var chain []Response
	seen := map[string]bool{} // URL and cookies of each request, at most maxRedirects+1
	next := rawURL
	for i := 0; i <= maxRedirects; i++ {
		u, err := url.Parse(next)
		if err != nil {
			return chain, nil, err
		}
		key := u.String() + "\n" + fmt.Sprint(client.Jar.Cookies(u))
		if seen[key] {
			return chain, nil, &RedirectError{Chain: append(chainURLs(chain), u.String()), Loop: true}
		}
		seen[key] = true
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return chain, nil, err
		}
		req.Header.Set("Origin", ScanOrigin)
		req.Header.Set("User-Agent", "caddy-hardening-check")
		resp, err := client.Do(req)
		if err != nil {
			if len(chain) > 0 { // the redirect's target is part of the route even when it fails
				chain = append(chain, Response{URL: u})
			}
			return chain, nil, err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		chain = append(chain, Response{URL: u, Status: resp.StatusCode, Header: resp.Header})
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode > 399 || loc == "" {
			return chain, body, nil
		}
		ref, err := u.Parse(loc)
		if err != nil {
			return chain, nil, err
		}
		next = ref.String()
	}
	return chain, nil, &RedirectError{Chain: append(chainURLs(chain), next)}
}

func chainURLs(chain []Response) []string {
	urls := make([]string, len(chain))
	for i, r := range chain {
		urls[i] = r.URL.String()
	}
	return urls
}

func isCertError(err error) bool {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	return err != nil && (errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify))
}
