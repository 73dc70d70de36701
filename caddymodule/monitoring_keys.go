package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/swarmsec/caddy-hardening/apikey"
)

// apiKeySet resolves the runtime placeholders of api_keys ({env.MONITORING_KEYS},
// {file./run/secrets/monitoring_keys}) and parses the digests. A placeholder may hold several
// digests, separated by spaces or commas (as ip_classes and the Redis address lists take
// them). A placeholder that resolves to nothing is refused by name: an unset variable would
// otherwise leave no key, and the details locked to everyone but the trusted class, with no
// word at load. What a placeholder holds is never quoted in an error: a key put there instead
// of its digest would reach the logs.
func apiKeySet(items []string) (*apikey.Set, error) {
	repl := caddy.NewReplacer()
	var digests []string
	for _, item := range items {
		if !isPlaceholder(item) {
			digests = append(digests, item)
			continue
		}
		held := resolveList(repl, []string{item})
		if len(held) == 0 {
			return nil, fmt.Errorf("monitoring: api_keys %s resolves to nothing (is the variable or file set?): it must hold one or more sha256:<64 hex digits> digests (from caddy hardening keygen), separated by spaces or commas", item)
		}
		for i, d := range held {
			if _, err := apikey.ParseSet([]string{d}); err != nil {
				return nil, fmt.Errorf("monitoring: api_keys %s: item %d of %d is not a sha256:<64 hex digits> digest; it must hold the digests (from caddy hardening keygen), never the keys", item, i+1, len(held))
			}
		}
		digests = append(digests, held...)
	}
	return apikey.ParseSet(digests)
}
