package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// New builds a client for the options; it does not connect (go-redis dials lazily). Validate
// first: New assumes valid options.
func New(o Options) (redis.UniversalClient, error) {
	tlsConfig, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	u := &redis.UniversalOptions{
		ClientName:       o.ClientName,
		Username:         o.Username,
		Password:         o.Password,
		SentinelUsername: o.SentinelUsername,
		SentinelPassword: o.SentinelPassword,
		MaxRetries:       o.MaxRetries,
		DialTimeout:      o.DialTimeout,
		ReadTimeout:      o.ReadTimeout,
		WriteTimeout:     o.WriteTimeout,
		PoolSize:         o.PoolSize,
		// One dial per attempt: go-redis's default of 5 dials with backoff would hold a
		// request ~0.5 s when Redis is down, where modules should fall back at once.
		DialerRetries: 1,
		TLSConfig:     tlsConfig,
		// Callers bound each call with a context deadline (a rate-limit decision waits
		// ~50 ms, not read_timeout): honour it on the socket too.
		ContextTimeoutEnabled: true,
		// Maintenance notifications only exist on Redis Enterprise/Cloud; "auto" would probe
		// every new connection with an extra command.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if o.DB != nil {
		u.DB = *o.DB
	}
	switch o.Mode() {
	case Cluster:
		u.Addrs = o.ClusterAddrs
		u.IsClusterMode = true
		return redis.NewClusterClient(u.Cluster()), nil
	case Sentinel:
		u.MasterName = o.SentinelMaster
		u.Addrs = o.SentinelAddrs
		return redis.NewFailoverClient(u.Failover()), nil
	}
	parsed, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, errors.New(Redact(err.Error()))
	}
	simple := u.Simple()
	simple.Network, simple.Addr = parsed.Network, parsed.Addr
	if o.Username == "" {
		simple.Username = parsed.Username
	}
	if o.Password == "" {
		simple.Password = parsed.Password
	}
	if o.DB == nil {
		simple.DB = parsed.DB
	}
	if tlsConfig == nil && parsed.TLSConfig != nil { // rediss:// alone
		simple.TLSConfig = parsed.TLSConfig
	}
	return redis.NewClient(simple), nil
}

func (o Options) tlsConfig() (*tls.Config, error) {
	if !o.TLS && o.CAFile == "" && o.CertFile == "" && !o.InsecureSkipVerify {
		return nil, nil
	}
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         o.ServerName,         // empty: the host of each address dialled
		InsecureSkipVerify: o.InsecureSkipVerify, //nolint:gosec // opt-in, reported as a finding
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis: reading ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis: ca_file %s holds no PEM certificate", o.CAFile)
		}
		c.RootCAs = pool
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis: loading cert_file/key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// SentinelMasters lists the names of the masters the first sentinel that answers monitors
// (SENTINEL MASTERS), for an error that says a name is unknown: the right one is usually among
// them.
func SentinelMasters(ctx context.Context, o Options) ([]string, error) {
	tlsConfig, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	var last error
	for _, addr := range o.SentinelAddrs {
		c := redis.NewSentinelClient(&redis.Options{Addr: addr, Username: o.SentinelUsername, Password: o.SentinelPassword,
			TLSConfig: tlsConfig, DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, MaxRetries: -1})
		masters, err := c.Masters(ctx).Result()
		_ = c.Close()
		if err != nil {
			last = err
			continue
		}
		var names []string
		for _, m := range masters {
			switch fields := m.(type) {
			case map[any]any: // RESP3
				if v, ok := fields["name"].(string); ok {
					names = append(names, v)
				}
			case []any: // RESP2: name, value, ...
				for i := 0; i+1 < len(fields); i += 2 {
					if k, _ := fields[i].(string); k == "name" {
						if v, ok := fields[i+1].(string); ok {
							names = append(names, v)
						}
					}
				}
			}
		}
		sort.Strings(names)
		return names, nil
	}
	return nil, last
}
