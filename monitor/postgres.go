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
//
// With a Role, the run asks SELECT pg_is_in_recovery() instead of SELECT 1 and fails when the
// server's role differs: a hot standby answers queries, so SELECT 1 alone passes a demoted
// primary after a failover. A mismatch closes the connection and, on a kept one, is asked
// again on one new connection in the same run, as a failure is: a DNS name, a virtual IP or a
// pooler that now names another server is followed.
type PostgresChecker struct {
	cfg *pgx.ConnConfig

	// Role is the role the server must have; RoleAny (the default) accepts either.
	Role PostgresRole

	mu   sync.Mutex
	conn *pgx.Conn
}

// PostgresRole is the role a postgres check requires of the server.
type PostgresRole string

// The roles: a primary takes writes; a standby is in recovery (read-only, replaying WAL).
const (
	RoleAny     PostgresRole = ""
	RolePrimary PostgresRole = "primary"
	RoleStandby PostgresRole = "standby"
)

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
	err := p.probeLocked(ctx)
	if err != nil && kept && ctx.Err() == nil {
		// The kept connection may have been closed while idle: one new connection decides.
		err = p.probeLocked(ctx)
	}
	if err != nil {
		return Failed(err)
	}
	return Outcome{Status: Pass}
}

// probeLocked is one attempt of Check: SELECT 1 (with a Role, SELECT pg_is_in_recovery() and
// the role compared) on the kept connection, connecting first when there is none; on an error
// or a role mismatch the connection is closed, so the next attempt connects again.
func (p *PostgresChecker) probeLocked(ctx context.Context) error {
	if p.conn == nil || p.conn.IsClosed() {
		conn, err := pgx.ConnectConfig(ctx, p.cfg)
		if err != nil {
			return err
		}
		p.conn = conn
	}
	if p.Role != RoleAny {
		var inRecovery bool
		err := p.conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
		if err == nil {
			err = p.roleMismatch(inRecovery)
		}
		if err != nil {
			p.closeLocked()
		}
		return err
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

// roleMismatch says how the server's role (in recovery: a standby) differs from Role; nil
// when it does not.
func (p *PostgresChecker) roleMismatch(inRecovery bool) error {
	switch {
	case inRecovery && p.Role == RolePrimary:
		return errors.New("server is a standby (in recovery); role primary expected")
	case !inRecovery && p.Role == RoleStandby:
		return errors.New("server is a primary (not in recovery); role standby expected")
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
