package testenv

import (
	"net"
	"os"
	"testing"
	"time"
)

// RequirePostgres skips the test without a PostgreSQL server on 127.0.0.1:5432, and fails it
// under CI (whose script starts one).
func RequirePostgres(t testing.TB) {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:5432", time.Second)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL is not answering on 127.0.0.1:5432 and CI is set: the CI script must start it (%v)", err)
		}
		t.Skipf("no PostgreSQL on 127.0.0.1:5432: %v", err)
	}
	c.Close()
}
