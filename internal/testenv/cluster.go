package testenv

import (
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a 3-master Redis Cluster on loopback, without replicas unless AddReplica adds
// them.
type Cluster struct {
	Nodes []*Redis // the masters it was created with

	extra []string // StartCluster's arguments, for every node
}

// StartCluster starts three cluster-enabled redis-servers, joins them with
// `redis-cli --cluster create` and waits until every node reports cluster_state:ok. Extra
// arguments go to every node (e.g. "--cluster-require-full-coverage", "no").
func StartCluster(t testing.TB, extra ...string) *Cluster {
	t.Helper()
	RequireBinary(t, "redis-server")
	cli := RequireBinary(t, "redis-cli")
	c := &Cluster{extra: extra}
	args := []string{"--cluster", "create"}
	for i := 0; i < 3; i++ {
		n := c.startNode(t)
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

// startNode starts one cluster-enabled redis-server, not yet part of any cluster.
func (c *Cluster) startNode(t testing.TB) *Redis {
	t.Helper()
	dir := t.TempDir()
	return StartRedis(t, append([]string{"--cluster-enabled", "yes", "--cluster-config-file", dir + "/nodes.conf",
		"--cluster-node-timeout", "2000"}, c.extra...)...)
}

// AddReplica starts one more node, joins it to the Cluster as a replica of master and returns
// once every node knows it and it has synced. It is not added to Nodes; `CLUSTER FAILOVER` on
// it makes it the master of master's slots.
func (c *Cluster) AddReplica(t testing.TB, master *Redis) *Redis {
	t.Helper()
	n := c.startNode(t)
	masterID, err1 := master.Do("CLUSTER", "MYID")
	id, err2 := n.Do("CLUSTER", "MYID")
	_, err3 := n.Do("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(master.Port))
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatalf("joining %s to the cluster: %v", n.Addr, err)
	}
	WaitFor(t, 20*time.Second, "the new node to know the master", func() bool {
		nodes, err := n.Do("CLUSTER", "NODES")
		return err == nil && strings.Contains(fmt.Sprint(nodes), fmt.Sprint(masterID))
	})
	noSyncDelay(t, master)
	if _, err := n.Do("CLUSTER", "REPLICATE", masterID); err != nil {
		t.Fatalf("CLUSTER REPLICATE on %s: %v", n.Addr, err)
	}
	// Every master votes in a failover: each must know the node as master's replica. A line
	// of CLUSTER NODES is "<id> <addr> <flags> <master id> ...".
	for _, m := range c.Nodes {
		WaitFor(t, 20*time.Second, "master "+m.Addr+" to know the replica", func() bool {
			nodes, err := m.Do("CLUSTER", "NODES")
			for line := range strings.Lines(fmt.Sprint(nodes)) {
				if f := strings.Fields(line); err == nil && len(f) > 3 && f[0] == id && strings.Contains(f[2], "slave") && f[3] == masterID {
					return true
				}
			}
			return false
		})
	}
	waitSynced(t, n)
	return n
}
