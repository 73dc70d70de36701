package redisconn

import (
	"strings"
	"testing"
	"time"
)

func intp(n int) *int { return &n }

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		o    Options
		err  string // substring; "" means valid
	}{
		{"url", Options{URL: "redis://127.0.0.1:6379/0"}, ""},
		{"url without port", Options{URL: "redis://redis.internal"}, ""},
		{"rediss", Options{URL: "rediss://u:p@redis.internal:6380/2"}, ""},
		{"unix", Options{URL: "unix:///run/redis.sock"}, ""},
		{"ipv6", Options{URL: "redis://[::1]:6379"}, ""},
		{"cluster", Options{ClusterAddrs: []string{"10.0.0.1:6379", "10.0.0.2:6379"}}, ""},
		{"sentinel", Options{SentinelMaster: "mymaster", SentinelAddrs: []string{"10.0.0.1:26379"}}, ""},
		{"nothing", Options{}, "exactly one of"},
		{"url and cluster", Options{URL: "redis://a:1", ClusterAddrs: []string{"b:2"}}, "exactly one of"},
		{"cluster and sentinel", Options{ClusterAddrs: []string{"b:2"}, SentinelMaster: "m", SentinelAddrs: []string{"c:3"}}, "exactly one of"},
		{"not a url", Options{URL: "notaurl"}, `"notaurl" has no scheme; expected a URL: redis://`},
		{"host and port", Options{URL: "10.0.0.1:6379"}, `"10.0.0.1:6379" has no scheme; expected redis://10.0.0.1:6379 (rediss:// for TLS)`},
		{"kombu sentinel", Options{URL: "sentinel://10.0.0.1:26379"}, "expected `sentinel <master> <host:port>...` in the redis block"},
		{"kombu socket", Options{URL: "redis+socket:///run/redis.sock"}, "expected unix:///path/to/redis.sock"},
		{"http url", Options{URL: "http://127.0.0.1:6379"}, "expected a redis://"},
		{"no host", Options{URL: "redis:///0"}, "has no host"},
		{"bad port", Options{URL: "redis://h:99999"}, "invalid port"},
		{"bad db path", Options{URL: "redis://h:6379/x"}, "database number 0-15"},
		{"db out of range in url", Options{URL: "redis://h:6379/16"}, "database number 0-15"},
		{"url options", Options{URL: "redis://h:6379/0?pool_size=5&db=2"}, "URL options (?...) are not read; write them in the redis block instead: pool_size 5; db 2"},
		{"go-redis seconds", Options{URL: "redis://h:6379/0?dial_timeout=3&read_timeout=6s"}, "write them in the redis block instead: dial_timeout 3s; read_timeout 6s"},
		{"cluster seed url", Options{ClusterAddrs: []string{"redis://10.0.0.1:7000/0"}}, `cluster address "redis://10.0.0.1:7000/0": expected host:port without a scheme or credentials (10.0.0.1:7000;`},
		{"unix without path", Options{URL: "unix://"}, "no socket path"},
		{"cluster addr without port", Options{ClusterAddrs: []string{"10.0.0.1"}}, "expected host:port"},
		{"cluster with db", Options{ClusterAddrs: []string{"a:1"}, DB: intp(2)}, "only database 0"},
		{"sentinel without master", Options{SentinelAddrs: []string{"a:1"}}, "master name"},
		{"sentinel without addrs", Options{SentinelMaster: "m"}, "at least one sentinel address"},
		{"sentinel with credentials", Options{SentinelMaster: "m", SentinelAddrs: []string{"a:1"}, SentinelUsername: "u", SentinelPassword: "p"}, ""},
		{"sentinel password without sentinel", Options{URL: "redis://a:1", SentinelPassword: "p"}, "sentinel_username and sentinel_password authenticate to the sentinels, and there are none"},
		{"sentinel username with cluster", Options{ClusterAddrs: []string{"a:1"}, SentinelUsername: "u"}, "authenticate to the sentinels, and there are none"},
		{"db out of range", Options{URL: "redis://a:1", DB: intp(16)}, "out of range"},
		{"cert without key", Options{URL: "redis://a:1", CertFile: "c.pem"}, "go together"},
		{"negative timeout", Options{URL: "redis://a:1", ReadTimeout: -time.Second}, "read_timeout must not be negative"},
		// Was accepted: a dial_timeout of an hour held the startup ping (and any caller without
		// a deadline of its own) for that long on a blackholed address.
		{"timeout of hours", Options{URL: "redis://a:1", DialTimeout: time.Hour}, "dial_timeout 1h0m0s is longer than 10s"},
		{"longest timeout", Options{URL: "redis://a:1", WriteTimeout: 10 * time.Second}, ""},
		{"negative pool", Options{URL: "redis://a:1", PoolSize: -1}, "pool_size"},
		// go-redis sizes its idle list by PoolSize at once: a JSON pool_size of 10^9 took 8 GB.
		{"pool too large", Options{URL: "redis://a:1", PoolSize: 1_000_000_000}, "pool_size must be 1 to 100000 (0: the default), got 1000000000"},
		{"largest pool", Options{URL: "redis://a:1", PoolSize: MaxPoolSize}, ""},
		{"bad retries", Options{URL: "redis://a:1", MaxRetries: -2}, "max_retries"},
		{"too many retries", Options{URL: "redis://a:1", MaxRetries: 11}, "max_retries must be -1 (none) to 10, got 11"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.o.Validate()
			if c.err == "" {
				if err != nil {
					t.Fatalf("valid options refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("err = %v, want it to contain %q", err, c.err)
			}
		})
	}
}

func TestErrorsNeverShowThePassword(t *testing.T) {
	const secret = "pa55-w0rd"
	for _, raw := range []string{
		"redis://user:" + secret + "@host:99999/0",
		"redis://user:" + secret + "@host:6379/x",
		"redis://user:" + secret + "@ho st:6379", // url.Parse fails and quotes its input
		"redis://:" + secret + "@%zz:6379",       // invalid escape
		"http://user:" + secret + "@host",        // wrong scheme
		"redis://host:6379/0?password=" + secret, // an option redis-py reads
		"redis://host:6379/0?auth_token=" + secret + "&db=1",
		"redis://host:6379/0?x=" + secret, // unknown: shown as xxxxx too
		"redis://host:6379/0?" + secret,   // no value: the name is shown as xxxxx
		"redis://host:6379/0?PASSWORD=" + secret,
		"redis://host:6379/0?password=" + secret + "&%zz",
		"user:" + secret + "@host:6379", // no scheme
		"redis+sentinel://:" + secret + "@host:26379/mymaster",
	} {
		err := Options{URL: raw}.Validate()
		if err == nil {
			t.Errorf("%q accepted", raw)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the password: %v", err)
		}
	}
	for _, addr := range []string{"redis://u:" + secret + "@h", "u:" + secret + "@h:7000", ":" + secret + "@h:7000"} {
		err := Options{ClusterAddrs: []string{addr}}.Validate()
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("cluster address error: %v", err)
		}
		err = Options{SentinelMaster: "m", SentinelAddrs: []string{addr}}.Validate()
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("sentinel address error: %v", err)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"redis://user:pw@host:1/0":                              "redis://user:xxxxx@host:1/0",
		"rediss://:pw@host":                                     "rediss://:xxxxx@host",
		"redis://user@host":                                     "redis://user@host",
		"redis://host:6379":                                     "redis://host:6379",
		"redis://u:p@w@rd@host":                                 "redis://u:xxxxx@host",
		"dial tcp 10.0.0.1:6379: boom":                          "dial tcp 10.0.0.1:6379: boom",
		"redis://h/0?db=1&password=pw":                          "redis://h/0?db=1&password=xxxxx",
		`"redis://h?Auth_Token=pw": x`:                          `"redis://h?Auth_Token=xxxxx": x`,
		"redis://h?dial_timeout=1s":                             "redis://h?dial_timeout=1s",
		"redis://h?ssl_passphrase=pw&db_pwd=pw&key=pw&monkey=1": "redis://h?ssl_passphrase=xxxxx&db_pwd=xxxxx&key=xxxxx&monkey=1",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEndpointsAndModes(t *testing.T) {
	for _, c := range []struct {
		o    Options
		mode Mode
		eps  string
	}{
		{Options{URL: "redis://u:secret@10.0.0.1:6380/1"}, Standalone, "10.0.0.1:6380"},
		{Options{URL: "unix:///run/redis.sock"}, Standalone, "/run/redis.sock"},
		{Options{URL: "redis://localhost/0"}, Standalone, "localhost:6379"}, // go-redis's default port
		{Options{URL: "rediss://[::1]"}, Standalone, "[::1]:6379"},
		{Options{ClusterAddrs: []string{"a:1", "b:2"}}, Cluster, "a:1,b:2"},
		{Options{SentinelMaster: "m", SentinelAddrs: []string{"s:26379"}}, Sentinel, "s:26379"},
	} {
		if c.o.Mode() != c.mode {
			t.Errorf("%+v: mode %s, want %s", c.o, c.o.Mode(), c.mode)
		}
		if got := strings.Join(c.o.Endpoints(), ","); got != c.eps {
			t.Errorf("%+v: endpoints %s, want %s", c.o, got, c.eps)
		}
	}
}

func TestHasPasswordAndTLS(t *testing.T) {
	if !(Options{URL: "redis://:p@h"}).HasPassword() || !(Options{Password: "p"}).HasPassword() ||
		!(Options{SentinelPassword: "p"}).HasPassword() || (Options{URL: "redis://u@h"}).HasPassword() {
		t.Error("HasPassword wrong")
	}
	if !(Options{URL: "rediss://h"}).TLSEnabled() || !(Options{URL: "redis://h", TLS: true}).TLSEnabled() || (Options{URL: "redis://h"}).TLSEnabled() {
		t.Error("TLSEnabled wrong")
	}
}

func TestFingerprint(t *testing.T) {
	a := Options{URL: "redis://h:1/0", Password: "secret"}
	b := a
	if a.Fingerprint() != b.Fingerprint() {
		t.Fatal("equal options, different fingerprints")
	}
	b.Password = "other"
	if a.Fingerprint() == b.Fingerprint() {
		t.Fatal("a different password must give a different client")
	}
	if strings.Contains(a.Fingerprint(), "secret") {
		t.Fatal("fingerprint holds the password")
	}
}
