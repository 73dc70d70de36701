package monitor

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// maxBodyRead bounds how much of an HTTP check's response body is read for BodyContains.
const maxBodyRead = 64 << 10

// StatusRange is an accepted HTTP status: one code (200) or a class (2xx as 200-299).
type StatusRange struct{ Lo, Hi int }

// ParseStatusRange reads "200" or "2xx".
func ParseStatusRange(s string) (StatusRange, error) {
	if len(s) == 3 && strings.HasSuffix(s, "xx") && s[0] >= '1' && s[0] <= '5' {
		lo := int(s[0]-'0') * 100
		return StatusRange{lo, lo + 99}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 599 {
		return StatusRange{}, fmt.Errorf("expected an HTTP status (100-599) or a class (2xx), got %q", s)
	}
	return StatusRange{n, n}, nil
}

func (r StatusRange) contains(code int) bool { return code >= r.Lo && code <= r.Hi }

// String is the range as configured: "200" or "2xx".
func (r StatusRange) String() string {
	if r.Lo%100 == 0 && r.Hi == r.Lo+99 {
		return fmt.Sprintf("%dxx", r.Lo/100)
	}
	if r.Lo == r.Hi {
		return strconv.Itoa(r.Lo)
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// unexpectedStatus says which status came, which were expected and, for a redirect, where it
// leads (without the query, which may hold a token) and that it is not followed.
func unexpectedStatus(resp *http.Response, expect []StatusRange) string {
	want := make([]string, len(expect))
	for i, r := range expect {
		want[i] = r.String()
	}
	list := strings.Join(want, ", ")
	if i := strings.LastIndex(list, ", "); i >= 0 {
		list = list[:i] + " or " + list[i+2:]
	}
	msg := fmt.Sprintf("status %d, expected %s", resp.StatusCode, list)
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		if u, err := resp.Location(); err == nil {
			msg += fmt.Sprintf("; the redirect to %s is not followed (expect %d, or check its target)", SafeTarget(u.String()), resp.StatusCode)
		}
	}
	return msg
}

// HTTPChecker sends one request and checks the status and, optionally, a body substring.
// Redirects are not followed (a redirect is the answer). TLS certificates are always verified.
type HTTPChecker struct {
	client *http.Client
	method string
	url    string
	header http.Header
	expect []StatusRange
	body   []byte
}

// HTTPOptions configure an HTTPChecker.
type HTTPOptions struct {
	Method       string      // default GET
	URL          string      // http:// or https://
	Header       http.Header // e.g. Host, Authorization
	Expect       []StatusRange
	BodyContains string
	CAFile       string // PEM roots to trust instead of the system's
}

// NewHTTPChecker validates the options and builds the client.
func NewHTTPChecker(o HTTPOptions) (*HTTPChecker, error) {
	u, err := ParseCheckURL(o.URL)
	if err != nil {
		return nil, err
	}
	if o.Method == "" {
		o.Method = http.MethodGet
	}
	if len(o.Expect) == 0 {
		o.Expect = []StatusRange{{200, 299}}
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", o.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	tr := &http.Transport{
		Proxy:               nil, // probe the dependency itself, never through an environment proxy
		DialContext:         (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConf,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	return &HTTPChecker{
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		method: o.Method, url: u.String(), header: o.Header.Clone(), expect: o.Expect, body: []byte(o.BodyContains),
	}, nil
}

// ParseCheckURL accepts an absolute http or https URL with a host.
func ParseCheckURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("expected an http:// or https:// URL with a host, got %q", Redact(raw))
	}
	return u, nil
}

// SafeTarget is a URL as shown to authorized clients: no credentials, no query.
func SafeTarget(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host + u.EscapedPath()
}

// Check implements Checker.
func (h *HTTPChecker) Check(ctx context.Context) Outcome {
	req, err := http.NewRequestWithContext(ctx, h.method, h.url, nil)
	if err != nil {
		return Failed(err)
	}
	for k, v := range h.header {
		req.Header[k] = v
	}
	if host := h.header.Get("Host"); host != "" {
		req.Host = host
	}
	req.Header.Set("User-Agent", "caddy-hardening-monitor")
	resp, err := h.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is known; keep the cause
		}
		var unknownCA x509.UnknownAuthorityError
		if errors.As(err, &unknownCA) {
			err = fmt.Errorf("%w; trust the server's CA with the check's ca_file", err)
		}
		return Failed(err)
	}
	defer resp.Body.Close()
	obs := []Observation{{Name: "status", Value: resp.StatusCode}}
	ok := false
	for _, r := range h.expect {
		ok = ok || r.contains(resp.StatusCode)
	}
	if !ok {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBodyRead))
		return Outcome{Status: Fail, Output: unexpectedStatus(resp, h.expect), Observed: obs}
	}
	if len(h.body) > 0 {
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyRead))
		if err != nil {
			return Outcome{Status: Fail, Output: "reading the body: " + err.Error(), Observed: obs}
		}
		if !bytes.Contains(b, h.body) {
			return Outcome{Status: Fail, Output: fmt.Sprintf("the first %d bytes of the body do not contain the expected text", maxBodyRead), Observed: obs}
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBodyRead)) // lets the connection be reused
	return Outcome{Status: Pass, Observed: obs}
}

// Close drops idle connections.
func (h *HTTPChecker) Close() error {
	h.client.CloseIdleConnections()
	return nil
}

// TCPChecker dials an address and closes the connection.
type TCPChecker struct {
	Address string // host:port
}

// Check implements Checker.
func (t TCPChecker) Check(ctx context.Context) Outcome {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", t.Address)
	if err != nil {
		return Failed(err)
	}
	_ = c.Close()
	return Outcome{Status: Pass}
}
