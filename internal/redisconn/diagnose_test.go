package redisconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// TestDiagnoseNamesOutages: the outages a client meets (nothing listens, a name that does not
// resolve, a server that never answers, no socket) were worded by the app's startup check
// alone (caddymodule's unreachableWhy), beside Diagnose for the configuration mistakes: two
// places explaining Redis errors. Diagnose now names both, from the errors a real client
// returns; an outage is no configuration mistake (the monitoring checks prefix only those).
func TestDiagnoseNamesOutages(t *testing.T) {
	// A server that accepts and never answers: the deadline ends the PING.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	r := testenv.StartRedis(t, "--requirepass", "right")

	for _, tc := range []struct {
		name    string
		o       Options
		cause   Cause
		mistake bool
		summary string
		hint    string
		fix     string
	}{
		{"nothing listens", Options{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t))},
			Refused, false, "redis unreachable", "(connection refused: nothing listens there)", "check the host and port"},
		{"no such host", Options{URL: "redis://no-such-host.invalid:6379/0"},
			Unresolvable, false, "redis unreachable", "(the host name does not resolve)", "check the host name"},
		{"no answer", Options{URL: "redis://" + silent.Addr().String() + "/0", ReadTimeout: 200 * time.Millisecond},
			NoAnswer, false, "redis unreachable", "(no answer within dial_timeout + read_timeout)", "no firewall drops"},
		{"no socket", Options{URL: "unix://" + filepath.Join(t.TempDir(), "redis.sock")},
			NoSocket, false, "redis unreachable", "(no socket at that path)", "unixsocket in redis.conf"},
		{"wrong password", Options{URL: fmt.Sprintf("redis://:wrong@%s/0", r.Addr)},
			Credentials, true, "redis refused this client's credentials", "(username, password or ACL)", "requirepass"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.MaxRetries = -1
			c := newClient(t, tc.o)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := c.Ping(ctx).Err()
			if err == nil {
				t.Fatal("PING succeeded")
			}
			d := Diagnose(err, tc.o)
			if d.Cause != tc.cause || d.Cause.Mistake() != tc.mistake {
				t.Fatalf("Diagnose(%v) = cause %d (mistake %v), want %d (mistake %v)", err, d.Cause, d.Cause.Mistake(), tc.cause, tc.mistake)
			}
			if d.Summary != tc.summary || d.Hint != tc.hint || !strings.Contains(d.Fix, tc.fix) {
				t.Errorf("Diagnose(%v) = %+v, want summary %q, hint %q, a fix with %q", err, d, tc.summary, tc.hint, tc.fix)
			}
		})
	}
}

// TestDiagnoseUnknownIsWordedToo: an error that names no cause still reads as something to
// act on, so a caller never words one itself; it is no configuration mistake.
func TestDiagnoseUnknownIsWordedToo(t *testing.T) {
	d := Diagnose(fmt.Errorf("something else"), Options{URL: "redis://127.0.0.1:6379/0"})
	if d.Cause != Unknown || d.Cause.Mistake() || d.String() != "redis unreachable (it did not answer)" || d.Fix == "" {
		t.Fatalf("Diagnose(something else) = %+v", d)
	}
	if d := Diagnose(nil, Options{}); d != (Diagnosis{}) {
		t.Fatalf("Diagnose(nil) = %+v", d)
	}
}

// TestRefusalsAreRecognised: the refusals of a Redis that answers, as real servers word them
// (wrapped as the modules wrap them), are told from an outage and name what to grant.
func TestRefusalsAreRecognised(t *testing.T) {
	for _, tc := range []struct {
		err                     string
		credentials, script, ro bool
		command                 string
	}{
		{err: "NOPERM this user has no permissions to run the 'subscribe' command", credentials: true, command: "subscribe"},
		{err: "rate limit store unavailable: redis: NOPERM this user has no permissions to run the 'evalsha' command", credentials: true, command: "evalsha"},
		{err: "NOPERM No permissions to access a key", credentials: true},
		{err: "rate limit store unavailable: redis: ERR The user executing the script can't run this command or subcommand script: 9198, on @user_script:20.", credentials: true, script: true},
		{err: "READONLY You can't write against a read only replica.", ro: true},
		{err: "rate limit store unavailable: redis: READONLY You can't write against a read only replica. script: 9198", ro: true},
		{err: "dial tcp 127.0.0.1:1: connect: connection refused"},
		{err: "ERR unknown command 'READONLYX'"},
	} {
		err := errors.New(tc.err)
		if got := RefusedCredentials(err); got != tc.credentials {
			t.Errorf("RefusedCredentials(%q) = %v", tc.err, got)
		}
		if got := ScriptRefused(err); got != tc.script {
			t.Errorf("ScriptRefused(%q) = %v", tc.err, got)
		}
		if got := ReadOnly(err); got != tc.ro {
			t.Errorf("ReadOnly(%q) = %v", tc.err, got)
		}
		if got := RefusedCommand(err); got != tc.command {
			t.Errorf("RefusedCommand(%q) = %q, want %q", tc.err, got, tc.command)
		}
	}
}
