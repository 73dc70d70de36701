package caddymodule

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"golang.org/x/net/idna"

	"github.com/swarmsec/caddy-hardening/observatory"
)

func checkCommand() *cobra.Command {
	var (
		configFile, adapter, target, httpURL, caFile, minGrade string
		envfiles                                               []string
		strict, asJSON                                         bool
	)
	cmd := &cobra.Command{
		Use:   "check [--config <file>] [--adapter <name>] [--envfile <file>] [--strict] [--json] | --url <url> [--http-url <url>] [--ca-file <file>] [--min-grade <grade>] [--json]",
		Short: "Lint a configuration, or grade a live site's security headers",
		Long: `With --config (default: ./Caddyfile), loads and provisions the configuration as
'caddy validate' does (nothing is started and no port is bound) and prints every finding of
every caddy-hardening module and of Caddy's own settings: its code, severity, where in the JSON
config, why it matters and how to fix it. --envfile loads environment variables from a file
first, as 'caddy run --envfile' does (variables already set win).

With --url, fetches the site (from http:// it follows the redirect to https://) and grades the
response with the MDN HTTP Observatory's scoring: score, letter grade, and each test's result
with its fix. An https:// --url that cannot be fetched (an untrusted certificate included: pass
its CA with --ca-file) stops the check; no other response is graded in its place. Redirects
that end on another host are followed, and the report says so. Credentials in the URL
(user:password@) go as Basic authentication to its host only, over HTTPS unless the URL is
http://, and are never printed.

The two modes do not mix: a flag of the other mode (--config with --url, --min-grade without
it) is refused, so that no CI step believes it ran a check it skipped.

Exit status:
  0  the check passed (warnings and infos alone pass, unless --strict)
  1  the report fails: an error finding (config.invalid included), a warning with --strict,
     a grade below --min-grade, or with --min-grade an answer that is not 2xx or redirects
     that end on another host
  2  the check could not run: a flag or argument refused, a file that cannot be read, a site
     that cannot be fetched, no temporary storage to provision in (check.temp_storage)`,
		Example: "  caddy hardening check --config Caddyfile.example\n" +
			"  caddy hardening check --config caddy.json --strict --json\n" +
			"  caddy hardening check --url http://example.com/ --min-grade A",
		Args: func(cmd *cobra.Command, args []string) error { return exitStatus(cmd, cobra.NoArgs(cmd, args)) },
	}
	run := func(cmd *cobra.Command) error {
		out := cmd.OutOrStdout()
		// The two modes share no flag but --json: one silently ignored would pass a CI
		// gate that never ran (an invalid config "checked" alongside a --url).
		if err := checkModeFlags(cmd, target != ""); err != nil {
			return err
		}
		if target != "" {
			return runGrade(cmd.Context(), out, target, httpURL, caFile, minGrade, asJSON)
		}
		for _, file := range envfiles {
			if err := loadEnvFile(file); err != nil {
				return err
			}
		}
		cfgJSON, err := loadCheckConfig(configFile, adapter)
		var adaptErr *adaptError
		var rep CheckReport
		switch {
		case errors.As(err, &adaptErr):
			rep = adaptFailure(adaptErr)
		case err != nil:
			return err
		default:
			rep = CheckConfig(quietProvisioning(cfgJSON))
		}
		if err := printCheck(out, rep, asJSON); err != nil {
			return err
		}
		if slices.ContainsFunc(rep.Findings, func(f Finding) bool { return f.Code == "check.temp_storage" }) {
			// About this machine, not the configuration: the check did not run.
			return errors.New("the check could not provision the configuration: see check.temp_storage")
		}
		if rep.Failed(strict) {
			cmd.SilenceUsage = true
			return failedCheck{fmt.Errorf("check failed: %d error(s), %d warning(s) (strict: %t)", rep.Errors, rep.Warnings, strict)}
		}
		return nil
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return exitStatus(cmd, run(cmd)) }
	cmd.SetFlagErrorFunc(exitStatus)
	f := cmd.Flags()
	f.StringVarP(&configFile, "config", "c", "", "configuration file (default: ./Caddyfile)")
	f.StringVarP(&adapter, "adapter", "a", "", "config adapter (e.g. caddyfile); default from the file name")
	f.StringSliceVar(&envfiles, "envfile", nil, "environment file(s) to load first, as caddy run --envfile does")
	f.BoolVar(&strict, "strict", false, "exit 1 on warnings too")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.StringVar(&target, "url", "", "grade the live response of this URL instead of linting a configuration")
	f.StringVar(&httpURL, "http-url", "", "with an https:// --url: the http:// URL whose redirect is tested (default: same host, port 80)")
	f.StringVar(&caFile, "ca-file", "", "with --url: PEM file of an extra root CA to trust (e.g. Caddy's local CA)")
	f.StringVar(&minGrade, "min-grade", "", "with --url: exit 1 below this grade (A+, A, A-, B+, ... F)")
	return cmd
}

// checkModeFlags refuses the flags of the other mode: --config, --adapter, --envfile and --strict lint a
// configuration; --http-url, --ca-file and --min-grade grade a --url.
func checkModeFlags(cmd *cobra.Command, grading bool) error {
	f := cmd.Flags()
	lint, grade := []string{"config", "adapter", "envfile", "strict"}, []string{"http-url", "ca-file", "min-grade"}
	for _, name := range lint {
		if grading && f.Changed(name) {
			return fmt.Errorf("--%s cannot be used with --url: --url grades a live site, --config lints a configuration; run check once for each", name)
		}
	}
	for _, name := range grade {
		if !grading && f.Changed(name) {
			return fmt.Errorf("--%s needs --url: it applies to grading a live site, not to linting a configuration", name)
		}
	}
	return nil
}

// adaptError is a configuration file that was read but that its adapter refuses (a Caddyfile
// syntax error, an unknown directive, a subdirective given twice): the check reports it as
// config.invalid, like a configuration Caddy refuses at provision.
type adaptError struct{ err error }

func (e *adaptError) Error() string { return e.err.Error() }
func (e *adaptError) Unwrap() error { return e.err }

// loadCheckConfig adapts the file like `caddy validate`. A file that cannot be read is an
// error; one that its adapter refuses is an *adaptError.
func loadCheckConfig(file, adapter string) ([]byte, error) {
	if file == "" {
		if _, err := os.Stat("Caddyfile"); err != nil {
			return nil, errors.New("no ./Caddyfile: give the configuration with --config")
		}
		file = "Caddyfile"
	}
	if file != "-" {
		if _, err := os.Stat(file); err != nil {
			return nil, err
		}
	}
	cfg, _, _, err := caddycmd.LoadConfig(file, adapter)
	if err != nil {
		return nil, &adaptError{err}
	}
	if len(cfg) == 0 {
		return nil, fmt.Errorf("%s: empty configuration", file)
	}
	return cfg, nil
}

func printCheck(w io.Writer, rep CheckReport, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	for _, f := range rep.Findings {
		if _, err := io.WriteString(w, formatFinding(f)); err != nil {
			return err
		}
	}
	what := "environment " + string(rep.Environment)
	if rep.Environment == "" {
		what = "the configuration was not loaded"
	}
	_, err := fmt.Fprintf(w, "%s: %d error(s), %d warning(s), %d info(s)\n", what, rep.Errors, rep.Warnings, rep.Infos)
	return err
}

// grades is the letter order, best first.
var grades = []string{"A+", "A", "A-", "B+", "B", "B-", "C+", "C", "C-", "D+", "D", "D-", "F"}

func runGrade(ctx context.Context, w io.Writer, target, httpURL, caFile, minGrade string, asJSON bool) error {
	if minGrade != "" && !slices.Contains(grades, minGrade) {
		return fmt.Errorf("--min-grade %q: expected one of %v", minGrade, grades)
	}
	if err := gradeURL("--url", target, "http", "https"); err != nil {
		return err
	}
	if httpURL != "" && !strings.HasPrefix(strings.ToLower(target), "https://") {
		return errors.New("--http-url goes with an https:// --url (from an http:// --url the redirect itself is followed)")
	}
	if httpURL != "" {
		if err := gradeURL("--http-url", httpURL, "http"); err != nil {
			return err
		}
	}
	client, err := gradeClient(caFile)
	if err != nil {
		return err
	}
	// Credentials in a URL (a staging site behind basic_auth) go as Basic authentication to
	// that URL's host only, and out of every URL the report and its errors print.
	auth := map[string]credentials{}
	target, httpURL = takeCredentials(target, auth), takeCredentials(httpURL, auth)
	if len(auth) > 0 {
		client.Transport = basicAuthTransport{base: client.Transport, users: auth}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, gradeDeadline)
	defer cancel()
	scan, err := (&observatory.Fetcher{Client: client}).Fetch(ctx, target, httpURL)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) { // what was fetched is cut short: no grade
		return fmt.Errorf("%s: the check did not end within %s (each request may take %s; a chain of slow redirects adds up): check the site's response times", target, gradeDeadline, gradeTimeout)
	}
	if err != nil {
		return errors.New(fetchFailure(err, caFile))
	}
	rep := observatory.Analyze(scan)
	if scan.RedirectErr != nil { // the redirect leads to it: graded as the Observatory does, but say why
		rep.Note = withCAHint(scan.RedirectErr, caFile)
	} else if !rep.Graded2xx() {
		rep.Note = fmt.Sprintf("the MDN HTTP Observatory would not grade this answer (status %d; it grades only 2xx: \"Site did not respond "+
			"with a 2xx HTTP status code\"); the score is for the headers of this %d, which may differ from those of the site's pages: "+
			"grade a URL that answers 2xx", rep.Status, rep.Status)
	}
	offHost := otherHost(target, rep.URL)
	if offHost != "" { // a CI gate must not grade another site without saying so
		note := fmt.Sprintf("the redirects of %s end on another host, %s, whose answer is graded: the grade is %s's, "+
			"not the site asked for; grade a URL that answers on its own host, or %s itself if that is the site meant",
			observatory.ShownURL(target), offHost, offHost, observatory.ShownURL(rep.URL))
		if rep.Note != "" {
			note = rep.Note + "; " + note
		}
		rep.Note = note
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(w, "%s: score %d, grade %s (MDN HTTP Observatory scoring)\n", rep.URL, rep.Score, rep.Grade)
		if rep.Note != "" {
			fmt.Fprintf(w, "  note: %s\n", rep.Note)
		}
		for _, r := range rep.Results {
			mark := "PASS"
			if !r.Pass {
				mark = "FAIL"
			}
			fmt.Fprintf(w, "  %s %+4d  %-32s %s\n", mark, r.Modifier, r.Test, r.Result)
			if !r.Pass && r.Fix != "" {
				fmt.Fprintf(w, "              fix: %s\n", r.Fix)
			}
		}
	}
	if minGrade != "" && offHost != "" {
		return failedCheck{fmt.Errorf("%s ends on another host, %s, after its redirects: --min-grade %s fails, since the grade is that host's; "+
			"grade a URL that answers on its own host", observatory.ShownURL(target), offHost, minGrade)}
	}
	if minGrade != "" && slices.Index(grades, rep.Grade) > slices.Index(grades, minGrade) {
		return failedCheck{fmt.Errorf("grade %s is below --min-grade %s", rep.Grade, minGrade)}
	}
	if minGrade != "" && scan.RedirectErr == nil && !rep.Graded2xx() {
		// A gate must not pass on an error page (a wrong path, an upstream down behind a 502):
		// the Observatory gives it no grade at all.
		return failedCheck{fmt.Errorf("%s answered %d, not 2xx: the MDN HTTP Observatory gives it no grade, so --min-grade %s fails; grade a URL that answers 2xx",
			rep.URL, rep.Status, minGrade)}
	}
	return nil
}

// otherHost is the host of graded when the redirects of target left target's host (another
// port of the same host is the same site), else "".
func otherHost(target, graded string) string {
	t, err1 := url.Parse(target)
	g, err2 := url.Parse(graded)
	if err1 != nil || err2 != nil || graded == "" {
		return ""
	}
	norm := func(h string) string { // a Unicode host reaches the server, and its redirects, as its A-label
		h = strings.TrimSuffix(strings.ToLower(h), ".")
		if a, err := idna.Lookup.ToASCII(h); err == nil {
			return a
		}
		return h
	}
	if norm(t.Hostname()) == norm(g.Hostname()) {
		return ""
	}
	return g.Hostname()
}

// credentials are the user information a URL flag gave for its host.
type credentials struct {
	user *url.Userinfo
	// plain allows http:// requests: the URL that named them was http://. Those of an https://
	// URL never go in clear text (the http:// side of its redirection test), as a browser keeps
	// them to the https:// origin.
	plain bool
}

// takeCredentials is raw without its user information, which it records for the URL's host.
func takeCredentials(raw string, users map[string]credentials) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	host := strings.ToLower(u.Hostname())
	users[host] = credentials{user: u.User, plain: u.Scheme == "http" || users[host].plain}
	u.User = nil
	return u.String()
}

// basicAuthTransport sends the credentials of a request's host (from the URL flag that named
// them) as Basic authentication, unless the request has an Authorization of its own.
type basicAuthTransport struct {
	base  http.RoundTripper
	users map[string]credentials
}

func (b basicAuthTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c, ok := b.users[strings.ToLower(r.URL.Hostname())]
	if ok && (r.URL.Scheme == "https" || c.plain) && r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		pw, _ := c.user.Password()
		r.SetBasicAuth(c.user.Username(), pw)
	}
	return b.base.RoundTrip(r)
}

// gradeClient is the client of `check --url`: Go's default transport (the environment's
// HTTP(S)_PROXY, as for the machine's other clients; never for loopback), TLS 1.2 at least,
// and the --ca-file root beside the system's.
func gradeClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file %s: %w", caFile, err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Timeout: gradeTimeout, Transport: tr}, nil
}

// gradeURL refuses a URL flag that is not absolute with one of schemes, naming the flag and
// the value; a bare host (example.com, localhost:8443) gets the URL it likely means.
func gradeURL(flag, raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err == nil && slices.Contains(schemes, u.Scheme) && u.Host != "" {
		return nil
	}
	if err == nil && u.User != nil {
		raw = u.Redacted() // the message may reach a CI log
	}
	msg := fmt.Sprintf("%s %s: the URL must be absolute, %s", flag, raw, strings.Join(schemes, ":// or ")+"://")
	if !strings.Contains(raw, "://") && raw != "" {
		hint := schemes[len(schemes)-1] + "://" + raw
		if !strings.Contains(raw, "/") {
			hint += "/"
		}
		msg += " (" + hint + "?)"
	}
	return errors.New(msg)
}

// withCAHint is err's message, with what to do when it is a certificate signed by an authority
// the client does not know: most often Caddy's local CA (localhost, `tls internal`), which
// Caddy does not install into the trust store of the machine that runs the check.
func withCAHint(err error, caFile string) string {
	var cert *observatory.CertError
	var unknown x509.UnknownAuthorityError
	switch {
	case !errors.As(err, &cert) || !errors.As(err, &unknown):
		return err.Error()
	case caFile != "":
		return fmt.Sprintf("%v; --ca-file %s does not hold the CA that issued it", err, caFile)
	}
	return fmt.Sprintf("%v; pass the root certificate of the CA that issued it with --ca-file "+
		"(Caddy's local CA, which signs localhost and `tls internal` sites: %s on the machine that runs Caddy, "+
		"unless its storage is configured elsewhere)", err, localCARoot())
}

// localCARoot is where Caddy keeps its local CA's root certificate with the default storage.
func localCARoot() string {
	return filepath.Join(caddy.AppDataDir(), "pki", "authorities", "local", "root.crt")
}

// quietProvisioning keeps Caddy's provisioning messages (INFO) from interleaving with the
// report when the configuration has no logging section of its own; warnings still show.
func quietProvisioning(cfg []byte) []byte {
	var m map[string]any
	if json.Unmarshal(cfg, &m) != nil || m["logging"] != nil {
		return cfg
	}
	m["logging"] = map[string]any{"logs": map[string]any{"default": map[string]any{"level": "WARN"}}}
	out, err := json.Marshal(m)
	if err != nil {
		return cfg
	}
	return out
}
