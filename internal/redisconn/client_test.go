package redisconn

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

func newClient(t *testing.T, o Options) redis.UniversalClient {
	t.Helper()
	if o.DialTimeout == 0 {
		o.DialTimeout = time.Second
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes and reads a key, proving the client reaches the server it was given.
func roundTrip(t *testing.T, c redis.UniversalClient, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Set(ctx, key, "v", time.Minute).Err(); err != nil {
		t.Fatalf("SET %s: %v", key, err)
	}
	if v, err := c.Get(ctx, key).Result(); err != nil || v != "v" {
		t.Fatalf("GET %s = %q, %v", key, v, err)
	}
}

func TestStandaloneURLWithACLUser(t *testing.T) {
	r := testenv.StartRedis(t)
	if _, err := r.Do("ACL", "SETUSER", "edge", "on", ">s3cret", "~*", "+@all"); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, Options{URL: fmt.Sprintf("redis://edge:s3cret@%s/3", r.Addr), ClientName: "caddy-hardening"})
	roundTrip(t, c, "k")
	// The URL's database was selected.
	db3 := redis.NewClient(&redis.Options{Addr: r.Addr, DB: 3})
	defer db3.Close()
	if v, _ := db3.Get(context.Background(), "k").Result(); v != "v" {
		t.Fatal("the key is not in database 3")
	}
	// The connection carries our name, so operators can find it in CLIENT LIST.
	list, _ := r.Do("CLIENT", "LIST")
	if !strings.Contains(fmt.Sprint(list), "name=caddy-hardening") {
		t.Fatalf("CLIENT LIST has no caddy-hardening connection:\n%v", list)
	}
}

func TestFieldsOverrideTheURL(t *testing.T) {
	r := testenv.StartRedis(t, "--requirepass", "right")
	c := newClient(t, Options{URL: fmt.Sprintf("redis://:wrong@%s/0", r.Addr), Password: "right", DB: intp(5)})
	roundTrip(t, c, "k")
	if got := c.(*redis.Client).Options().DB; got != 5 {
		t.Fatalf("db = %d, want 5", got)
	}
	wrong := newClient(t, Options{URL: fmt.Sprintf("redis://:wrong@%s/0", r.Addr), MaxRetries: -1})
	err := wrong.Ping(context.Background()).Err()
	if err == nil {
		t.Fatal("a wrong password was accepted")
	}
	if strings.Contains(err.Error(), "wrong") && !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("error shows the password: %v", err)
	}
}

func TestUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "redis.sock")
	testenv.StartRedis(t, "--unixsocket", sock, "--unixsocketperm", "700")
	roundTrip(t, newClient(t, Options{URL: "unix://" + sock}), "k")
}

func TestTLS(t *testing.T) {
	files := testenv.WriteTLSFiles(t)
	tlsPort := testenv.FreePort(t)
	testenv.StartRedis(t, "--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", files.Cert,
		"--tls-key-file", files.Key, "--tls-ca-cert-file", files.CA, "--tls-auth-clients", "no")
	url := fmt.Sprintf("rediss://127.0.0.1:%d/0", tlsPort)

	roundTrip(t, newClient(t, Options{URL: url, CAFile: files.CA}), "verified")
	roundTrip(t, newClient(t, Options{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", tlsPort), TLS: true, CAFile: files.CA, ServerName: "localhost"}), "tls-flag")

	// Without our CA, verification fails: TLS is really verified. The dial (handshake
	// included) gets time to fail for the certificate, not for the deadline, on a loaded machine.
	untrusted := newClient(t, Options{URL: url, MaxRetries: -1, DialTimeout: 10 * time.Second})
	if err := untrusted.Ping(context.Background()).Err(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an unknown CA was accepted: %v", err)
	}
	roundTrip(t, newClient(t, Options{URL: url, InsecureSkipVerify: true}), "insecure")
}

func TestCluster(t *testing.T) {
	cl := testenv.StartCluster(t)
	c := newClient(t, Options{ClusterAddrs: cl.Addrs()[:1]}) // one seed discovers the rest
	for i := 0; i < 30; i++ {                                // keys in many slots, on every master
		roundTrip(t, c, fmt.Sprintf("key-%d", i))
	}
	if _, ok := c.(*redis.ClusterClient); !ok {
		t.Fatalf("client is %T, want a cluster client", c)
	}
}

func TestSentinel(t *testing.T) {
	master := testenv.StartRedis(t)
	s := testenv.StartSentinel(t, master, "mymaster")
	c := newClient(t, Options{SentinelMaster: "mymaster", SentinelAddrs: []string{s.Addr}})
	roundTrip(t, c, "via-sentinel")
	if v, _ := master.Do("GET", "via-sentinel"); v != "v" {
		t.Fatalf("the key did not reach the master: %v", v)
	}
}

// TestSentinelTLS: the Sentinels and the master speak only TLS to clients. go-redis uses the
// one TLS configuration for both, so a client given the CA asks the Sentinel over TLS, is told
// the master's TLS port and writes there; without the CA it is refused at the Sentinel.
func TestSentinelTLS(t *testing.T) {
	files := testenv.WriteTLSFiles(t)
	masterTLS := testenv.FreePort(t)
	master := testenv.StartRedis(t, "--tls-port", strconv.Itoa(masterTLS), "--tls-cert-file", files.Cert,
		"--tls-key-file", files.Key, "--tls-ca-cert-file", files.CA, "--tls-auth-clients", "no")
	_, sentinelTLS := testenv.StartSentinelTLS(t, masterTLS, "tlsmaster", files)
	addrs := []string{fmt.Sprintf("127.0.0.1:%d", sentinelTLS)}

	c := newClient(t, Options{SentinelMaster: "tlsmaster", SentinelAddrs: addrs, TLS: true, CAFile: files.CA, ServerName: "localhost"})
	roundTrip(t, c, "via-tls-sentinel")
	if v, _ := master.Do("GET", "via-tls-sentinel"); v != "v" {
		t.Fatalf("the key did not reach the master: %v", v)
	}

	untrusted := newClient(t, Options{SentinelMaster: "tlsmaster", SentinelAddrs: addrs, TLS: true, MaxRetries: -1, DialTimeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // fails for the certificate, not a deadline
	defer cancel()
	if err := untrusted.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a Sentinel with an unknown CA was accepted: %v", err)
	}
}

func TestBadTLSFiles(t *testing.T) {
	if _, err := New(Options{URL: "rediss://h:1", CAFile: "/nonexistent/ca.pem"}); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Fatalf("missing CA file: %v", err)
	}
	files := testenv.WriteTLSFiles(t)
	if _, err := New(Options{URL: "rediss://h:1", CAFile: files.Key}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("a key as CA file: %v", err)
	}
	if _, err := New(Options{URL: "rediss://h:1", CertFile: files.Cert, KeyFile: files.CA}); err == nil {
		t.Fatal("mismatched client certificate accepted")
	}
}
