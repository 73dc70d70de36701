package caddymodule

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestRedisMisconfigurationAtStartupIsOneMessage: each common Redis misconfiguration, against
// real servers, with a site whose modules use Redis at startup (the rate limiter's probe,
// shared detections). A wrong password gave three lines: the startup check's warning, the
// shared detections' own "Redis refused this client" and the store_failover event, none with
// the fix; nothing listening, and a standalone server given as cluster, gave "redis unreachable"
// twice. Now the hardening logger warns once per misconfiguration (besides the findings, and
// the store_failover security event, which alerting reads), and that warning says what failed,
// at which address, and what to change (field fix); no line holds the password.
func TestRedisMisconfigurationAtStartupIsOneMessage(t *testing.T) {
	t.Setenv("WARN_TEST_REDIS_PASSWORD", goldenSecret)
	withPassword := testenv.StartRedis(t, "--requirepass", "the-right-one")
	plain := testenv.StartRedis(t)
	files := testenv.WriteTLSFiles(t)
	tlsPort := testenv.FreePort(t)
	testenv.StartRedis(t, "--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", files.Cert,
		"--tls-key-file", files.Key, "--tls-ca-cert-file", files.CA, "--tls-auth-clients", "no")
	cluster := testenv.StartCluster(t)
	master := testenv.StartRedis(t)
	sentinel := testenv.StartSentinel(t, master, "mymaster")
	nothing := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))

	for _, tc := range []struct {
		name, redis, addr string
		msg, fix          []string // what the one warning and its fix field contain
	}{
		{"wrong password", fmt.Sprintf("redis://%s/0 {\n\t\t\tpassword {env.WARN_TEST_REDIS_PASSWORD}\n\t\t}", withPassword.Addr), withPassword.Addr,
			[]string{"redis refused this client's credentials at startup", "(username, password or ACL)"}, []string{"set password", "requirepass"}},
		{"no password", withPassword.URL(0), withPassword.Addr,
			[]string{"redis refused this client's credentials at startup"}, []string{"requires a password and none is sent", "password {env.REDIS_PASSWORD}"}},
		{"nothing listens", "redis://" + nothing + "/0", nothing,
			[]string{"redis unreachable at startup", "connection refused: nothing listens there"}, []string{"check the host and port"}},
		{"TLS client, plain port", fmt.Sprintf("rediss://%s/0 {\n\t\t\tdial_timeout 200ms\n\t\t\tread_timeout 200ms\n\t\t}", plain.Addr), plain.Addr,
			[]string{"redis did not complete the TLS handshake at startup"}, []string{"tls-port", "redis:// without a tls block"}},
		{"plain client, TLS port", fmt.Sprintf("redis://127.0.0.1:%d/0", tlsPort), fmt.Sprintf("127.0.0.1:%d", tlsPort),
			[]string{"redis closed the connection at startup"}, []string{"rediss://"}},
		{"Cluster node as a URL", "redis://" + cluster.Nodes[0].Addr + "/0", cluster.Nodes[0].Addr,
			[]string{"redis is a Cluster node at startup", "given as one server"}, []string{"cluster <host:port>"}},
		{"standalone as cluster", fmt.Sprintf("{\n\t\t\tcluster %s\n\t\t}", plain.Addr), plain.Addr,
			[]string{"redis is no Cluster node at startup"}, []string{"as a URL"}},
		{"unknown sentinel master", fmt.Sprintf("{\n\t\t\tsentinel mymastr %s\n\t\t}", sentinel.Addr), sentinel.Addr,
			[]string{`knows no master named "mymastr"`}, []string{"sentinel monitor <name>", "the sentinels monitor: mymaster"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			block, url := site(t, "\tpolicy_rate_limit api")
			c := testcaddy.StartCaddy(t, fmt.Sprintf("{\n\thardening {\n\t\tenvironment development\n\t\tredis %s\n\t}\n}\n%s", tc.redis, block))
			get(t, url)
			warnings := func() []testenv.LogEntry {
				return testenv.Filter(c.Logs(), func(e testenv.LogEntry) bool {
					return e.Logger() == "hardening" && e.Level() == "warn" && e.Str("code") == ""
				})
			}
			// The sentinel's answer comes after go-redis's retries (see
			// TestRedisSentinelUnknownMasterSaysSo).
			testenv.WaitFor(t, 15*time.Second, "the startup warning", func() bool { return len(warnings()) > 0 })
			// The rate limiter's probe waits up to 1 s, shared detections retry each second:
			// let them fail too before counting.
			time.Sleep(2500 * time.Millisecond)
			got := warnings()
			if len(got) != 1 {
				t.Fatalf("want one warning, got %d: %v", len(got), got)
			}
			w := got[0]
			for _, want := range append(tc.msg, tc.addr) {
				if !strings.Contains(w.Msg(), want) {
					t.Errorf("the warning %q does not say %q", w.Msg(), want)
				}
			}
			for _, want := range tc.fix {
				if !strings.Contains(w.Str("fix"), want) {
					t.Errorf("the fix %q does not say %q", w.Str("fix"), want)
				}
			}
			for _, e := range c.Logs() {
				if strings.Contains(fmt.Sprint(e), goldenSecret) {
					t.Fatalf("a log line shows the password: %v", e)
				}
			}
		})
	}
}
