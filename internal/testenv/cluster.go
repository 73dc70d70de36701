package testenv

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Cluster is a 3-master Redis Cluster on loopback, without replicas.
type Cluster struct {
	Nodes []*Redis
}

// StartCluster starts three cluster-enabled redis-servers, joins them with
// `redis-cli --cluster create` and waits until every node reports cluster_state:ok. Extra
// arguments go to every node (e.g. "--cluster-require-full-coverage", "no").
func StartCluster(t testing.TB, extra ...string) *Cluster {
	t.Helper()
	RequireBinary(t, "redis-server")
	cli := RequireBinary(t, "redis-cli")
	c := &Cluster{}
	args := []string{"--cluster", "create"}
	for i := 0; i < 3; i++ {
		dir := t.TempDir()
		n := StartRedis(t, append([]string{"--cluster-enabled", "yes", "--cluster-config-file", dir + "/nodes.conf",
			"--cluster-node-timeout", "2000"}, extra...)...)
		c.Nodes = append(c.Nodes, n)
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range c.Nodes {
		for {
			info, err := n.Do("CLUSTER", "INFO")
			if s, ok := info.(string); err == nil && ok && strings.Contains(s, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s did not reach cluster_state:ok: %v %v", n.Addr, info, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// Addrs lists the nodes' host:port, as a cluster client's seeds.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}
