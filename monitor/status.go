// Package monitor runs dependency checks in the background and reports health in the IETF
// health-check format (draft-inadarei-api-health-check, `application/health+json`).
//
// Each Check probes one dependency (Redis, PostgreSQL, an HTTP service, a TCP endpoint, a
// worker queue) on its own schedule; requests only read the cached State, so probe traffic
// never reaches a dependency. Aggregate folds check states and the internal reports of other
// modules into one document and the readiness verdict. It imports nothing from Caddy.
package monitor

// Status is a health state in the draft's vocabulary.
type Status string

// The states, from good to bad.
const (
	Pass Status = "pass"
	Warn Status = "warn"
	Fail Status = "fail"
)

func (s Status) rank() int {
	switch s {
	case Pass:
		return 0
	case Warn:
		return 1
	default:
		return 2
	}
}

// Worse returns the worse of two states.
func Worse(a, b Status) Status {
	if b.rank() > a.rank() {
		return b
	}
	return a
}

// ParseStatus reads pass, warn or fail.
func ParseStatus(s string) (Status, bool) {
	switch Status(s) {
	case Pass, Warn, Fail:
		return Status(s), true
	}
	return "", false
}
