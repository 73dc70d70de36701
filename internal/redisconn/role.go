package redisconn

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Doer is what ReplicaRole needs of a client (a node of a Cluster, or any client).
type Doer interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// ReplicaRole asks the server its role (HELLO, Redis 6.2 and later, in @connection: granted
// where ROLE and INFO, in @dangerous, are not) and returns it when the server is a read-only
// replica ("replica", or "slave" as older servers say); "" for a primary, or a server that
// cannot say (an older one, an ACL without HELLO). A replica answers PING and every read but
// refuses every write (READONLY): an address that names one is a mistake, not an outage.
func ReplicaRole(ctx context.Context, c Doer) string {
	role := helloRole(c.Do(ctx, "HELLO").Val())
	if role == "replica" || role == "slave" {
		return role
	}
	return ""
}

// helloRole is the role field of a HELLO reply: a map (RESP3) or a flat list of pairs (RESP2);
// empty when the reply has none (an error, an older server).
func helloRole(reply any) string {
	switch v := reply.(type) {
	case map[any]any:
		s, _ := v["role"].(string)
		return s
	case []any:
		for i := 0; i+1 < len(v); i += 2 {
			if k, _ := v[i].(string); k == "role" {
				s, _ := v[i+1].(string)
				return s
			}
		}
	}
	return ""
}
