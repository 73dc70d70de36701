package caddymodule

import (
	"errors"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// Exit statuses of `caddy hardening check`, as eslint, ruff and shellcheck give theirs: 0 the
// check passed; 1 its report fails (an error finding, a warning with --strict, a grade below
// --min-grade); 2 it could not run and printed no report (a flag refused, a file that cannot
// be read, a site that cannot be fetched) or, for check.temp_storage, could not provision.
const (
	exitFailed    = 1
	exitCannotRun = 2
)

// failedCheck is a report that fails: the command exits exitFailed.
type failedCheck struct{ error }

func (e failedCheck) Unwrap() error { return e.error }

// statusError carries exit, the error Caddy's Main reads its exit status from (its type is
// Caddy's own, unexported: caddycmd.WrapCommandFuncForCobra makes it), beside err, which
// cobra prints as usual ("Error: ...").
type statusError struct{ err, exit error }

func (e statusError) Error() string   { return e.err.Error() }
func (e statusError) Unwrap() []error { return []error{e.err, e.exit} }

// exitStatus is what the command returns for err: nil, or err as it is for a failed report
// (Caddy exits 1 on any error), or err with exit status 2 for a check that could not run.
func exitStatus(cmd *cobra.Command, err error) error {
	var failed failedCheck
	if err == nil || errors.As(err, &failed) {
		return err
	}
	status := caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) { return exitCannotRun, nil })
	return statusError{err, status(cmd, nil)}
}
