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

// PostgresChecker keeps one connection and runs SELECT 1 on it. A kept connection that fails
// (the server, a pooler or a firewall closed it while idle: idle_session_timeout, PgBouncer's
// server_idle_timeout, a restart) is replaced in the same run by one new connection, so a
// closed idle connection is no failed run; a failure on that new connection is. A changed
// password or exhausted connection slots therefore show on the run that meets them. It never
// holds more than one connection.
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
	kept := p.conn != nil && !p.conn.IsClosed()
	err := p.selectOneLocked(ctx)
	if err != nil && kept && ctx.Err() == nil {
		// The kept connection may have been closed while idle: one new connection decides.
		err = p.selectOneLocked(ctx)
	}
	if err != nil {
		return Failed(err)
	}
	return Outcome{Status: Pass}
}

// selectOneLocked runs SELECT 1 on the kept connection, connecting first when there is none;
// on an error the connection is closed, so the next attempt connects again.
func (p *PostgresChecker) selectOneLocked(ctx context.Context) error {
	if p.conn == nil || p.conn.IsClosed() {
		conn, err := pgx.ConnectConfig(ctx, p.cfg)
		if err != nil {
			return err
		}
		p.conn = conn
	}
	var one int
	if err := p.conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		p.closeLocked()
		if err == nil {
			err = fmt.Errorf("SELECT 1 returned %d", one)
		}
		return err
	}
	return nil
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
