package monitor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// closeTimeout bounds the polite goodbye to the server when a connection is dropped.
const closeTimeout = time.Second

// PostgresChecker keeps one connection and runs SELECT 1 on it; after an error the connection
// is closed and the next run connects again, so a restarted server, a changed password or
// exhausted connection slots show on the next run. It never holds more than one connection.
type PostgresChecker struct {
	cfg *pgx.ConnConfig

	mu   sync.Mutex
	conn *pgx.Conn
}

// NewPostgresChecker parses a PostgreSQL URL or keyword/value connection string. Its errors
// never quote the string (it holds the password).
func NewPostgresChecker(dsn string) (*PostgresChecker, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("postgres: the connection string does not parse (expected postgres://user:password@host:5432/db or host=... dbname=...)")
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "caddy-hardening-monitor"
	}
	return &PostgresChecker{cfg: cfg}, nil
}

// Target is host:port/database, for display.
func (p *PostgresChecker) Target() string {
	return net.JoinHostPort(p.cfg.Host, strconv.Itoa(int(p.cfg.Port))) + "/" + p.cfg.Database
}

// Secrets lists the password, to redact from outputs.
func (p *PostgresChecker) Secrets() []string {
	return []string{p.cfg.Password}
}

// Check implements Checker.
func (p *PostgresChecker) Check(ctx context.Context) Outcome {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil || p.conn.IsClosed() {
		conn, err := pgx.ConnectConfig(ctx, p.cfg)
		if err != nil {
			return Failed(err)
		}
		p.conn = conn
	}
	var one int
	if err := p.conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		p.closeLocked()
		if err == nil {
			err = fmt.Errorf("SELECT 1 returned %d", one)
		}
		return Failed(err)
	}
	return Outcome{Status: Pass}
}

// Close closes the connection.
func (p *PostgresChecker) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked()
	return nil
}

func (p *PostgresChecker) closeLocked() {
	if p.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		_ = p.conn.Close(ctx)
		cancel()
		p.conn = nil
	}
}
