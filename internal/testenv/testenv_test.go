package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestRedisStopKillRestartKeepThePort(t *testing.T) {
	r := StartRedis(t)
	if _, err := r.Do("SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	port := r.Port
	r.Kill()
	if _, err := r.Do("PING"); err == nil {
		t.Fatal("Redis answers after Kill")
	}
	r.Restart()
	if r.Port != port {
		t.Fatalf("restarted on port %d, want %d", r.Port, port)
	}
	if v, err := r.Do("PING"); err != nil || v != "PONG" {
		t.Fatalf("PING after restart: %v %v", v, err)
	}
	if v, _ := r.Do("GET", "k"); v != nil {
		t.Fatalf("data survived a restart with persistence off: %v", v)
	}
	r.Stop()
	if _, err := r.Do("PING"); err == nil {
		t.Fatal("Redis answers after Stop")
	}
	r.Restart()
	if _, err := r.Do("PING"); err != nil {
		t.Fatal(err)
	}
}

func TestClusterIsReadyOnEveryNode(t *testing.T) {
	c := StartCluster(t)
	if len(c.Addrs()) != 3 {
		t.Fatalf("%d nodes", len(c.Addrs()))
	}
	for _, n := range c.Nodes {
		info, err := n.Do("CLUSTER", "INFO")
		if err != nil || !strings.Contains(info.(string), "cluster_state:ok") || !strings.Contains(info.(string), "cluster_known_nodes:3") {
			t.Fatalf("node %s: %v %v", n.Addr, info, err)
		}
	}
}

// TestMissingBinary checks both sides of the CI rule in a child test process: without CI a
// missing redis-server skips the test; with CI it fails it.
func TestMissingBinary(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "1" {
		RequireBinary(t, "redis-server-that-does-not-exist")
		t.Fatal("RequireBinary returned for a missing binary")
	}
	child := func(ci string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissingBinary$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=1", "CI="+ci)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := child("")
	if err != nil || !strings.Contains(out, "--- SKIP") || !strings.Contains(out, "is not on PATH") {
		t.Fatalf("without CI: want a skip with a message, got %v:\n%s", err, out)
	}
	out, err = child("1")
	if err == nil || !strings.Contains(out, "--- FAIL") || !strings.Contains(out, "CI is set") {
		t.Fatalf("with CI: want a failure, got %v:\n%s", err, out)
	}
}

// TestRedisSleepReturnsOnceAsleep: when Sleep returns, the server no longer answers, and the
// channel reports the wake-up.
func TestRedisSleepReturnsOnceAsleep(t *testing.T) {
	r := StartRedis(t, "--enable-debug-command", "yes")
	woke := r.Sleep(t, time.Second)
	if err := pingWithin(r.Addr, 100*time.Millisecond); err == nil {
		t.Fatal("Redis answered PING right after Sleep returned")
	}
	if err := <-woke; err != nil {
		t.Fatalf("DEBUG SLEEP: %v", err)
	}
	if err := pingRaw(r.Addr); err != nil {
		t.Fatalf("PING after the sleep: %v", err)
	}
}
