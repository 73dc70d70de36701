//go:build chaos

package chaos

import (
	"bytes"
	"fmt"
	"testing"
	"text/template"
	"time"

	"github.com/swarmsec/caddy-hardening/internal/testenv"
)

// The rate-limit policy of the /rl/ route: one request per second after a burst of 5, the same
// for every class so a client the detector reclassifies (429s raise its score) keeps its limit.
const (
	rlBurst    = 5
	rlInterval = time.Second
)

// monitorClient is the one trusted address: the monitoring routes show it their details.
const monitorClient = "10.255.0.1"

// stackConfig is what changes between scenarios; the rest of the Caddyfile is the full stack.
type stackConfig struct {
	Redis        string // the `redis` subdirective of the hardening app ("" for none)
	Store        string // rate_limit store: "" (Redis when configured) or memory
	StoreTimeout time.Duration
	MaxKeys      int
	MaxTracked   int
	Upstream     string // host:port
	Port         int    // set per instance
}

var caddyfile = template.Must(template.New("Caddyfile").Parse(`{
	admin off
	servers {
		trusted_proxies static 127.0.0.1/8
	}
	hardening {
		environment production
		{{.Redis}}
		ip_classes {
			trusted ` + monitorClient + `
		}
		detection {
			max_tracked {{.MaxTracked}}
		}
		policy chaos {
			limit 60/1m burst 5
			trusted 60/1m burst 5
			suspicious 60/1m burst 5
			key {client_ip}
		}
		policy app {
			limit 600/1m burst 100
			key {client_ip}
		}
		policy flood {
			limit 10/1h burst 10
			key {client_ip}
		}
		rate_limit {
			{{if .Store}}store {{.Store}}{{end}}
			max_keys {{.MaxKeys}}
			store_timeout {{.StoreTimeout}}
			on_store_failure fallback
		}
	}
}

http://127.0.0.1:{{.Port}} {
	bind 127.0.0.1
	security_headers
	path_guard
	handle_path /api/monitoring/* {
		monitoring
	}
	handle /rl/* {
		policy_rate_limit chaos
		reverse_proxy {{.Upstream}}
	}
	handle /app/* {
		policy_rate_limit app
		upstream_breaker app {
			consecutive_failures 3
			open_for 2s
			half_open_requests 1
		}
		reverse_proxy {{.Upstream}} {
			transport http {
				dial_timeout 1s
				response_header_timeout 5s
			}
		}
	}
	handle /flood/* {
		policy_rate_limit flood
		upstream_breaker flood
		reverse_proxy {{.Upstream}}
	}
}
`))

func (c stackConfig) caddyfile(t *testing.T) string {
	t.Helper()
	if c.StoreTimeout == 0 {
		c.StoreTimeout = 50 * time.Millisecond
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = 100000
	}
	if c.MaxTracked == 0 {
		c.MaxTracked = 100000
	}
	var b bytes.Buffer
	if err := caddyfile.Execute(&b, c); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// stack is three Caddy processes with one configuration.
type stack struct {
	procs []*testenv.Process
	urls  []string
}

func startStack(t *testing.T, c stackConfig) *stack {
	t.Helper()
	s := &stack{}
	for i := 0; i < 3; i++ {
		c.Port = testenv.FreePort(t)
		s.procs = append(s.procs, testenv.RunCaddy(t, c.caddyfile(t)))
		s.urls = append(s.urls, fmt.Sprintf("http://127.0.0.1:%d", c.Port))
	}
	return s
}

// standaloneRedis is the redis subdirective for one server.
func standaloneRedis(addr string) string {
	return fmt.Sprintf("redis redis://%s/0 {\n\t\t\tkey_prefix chaos:\n\t\t}", addr)
}

// clusterRedis is the redis subdirective for a Cluster.
func clusterRedis(addrs []string) string {
	s := "redis {\n\t\t\tcluster"
	for _, a := range addrs {
		s += " " + a
	}
	return s + "\n\t\t\tkey_prefix chaos:\n\t\t}"
}
