// Package poll is the one helper for waiting until something holds, shared
// by the process-cluster launcher (cluster/local), the end-to-end tests and
// the fault suite: it asks a condition at an interval, within a time limit,
// and says what it waited for and why it was not yet true when the limit
// passed.
package poll

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// abortError makes Until stop at once and return the wrapped error.
type abortError struct{ err error }

func (a abortError) Error() string { return a.err.Error() }
func (a abortError) Unwrap() error { return a.err }

// Abort wraps err so that Until stops polling and returns err: the
// condition can never become true (a process exited, say).
func Abort(err error) error { return abortError{err: err} }

// Until calls cond every interval until it reports done, returns an error
// made with Abort, ctx ends or limit passes. Any other error cond returns
// is the reason it is not done yet: it does not stop the polling and is
// quoted in the error returned when the limit passes. what names the
// condition in that error ("gateway-1 ready").
func Until(ctx context.Context, limit, interval time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var last error
	for {
		done, err := cond()
		var abort abortError
		switch {
		case errors.As(err, &abort):
			return fmt.Errorf("%s: %w", what, abort.err)
		case done:
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, context.Cause(ctx))
		case <-deadline.C:
			if last != nil {
				return fmt.Errorf("%s: not within %s: %w", what, limit, last)
			}
			return fmt.Errorf("%s: not within %s", what, limit)
		case <-ticker.C:
		}
	}
}

// T is the part of testing.TB that Eventually needs (so this package does
// not import testing into the programs that use Until).
type T interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Eventually is Until for tests: it polls cond every interval until it
// reports done, and fails t with cond's last status if that takes longer
// than limit. cond may fail the test itself (say, when a process it waits
// for exited).
func Eventually(t T, limit, interval time.Duration, what string, cond func() (done bool, status string)) {
	t.Helper()
	var status string
	err := Until(context.Background(), limit, interval, what, func() (bool, error) {
		var done bool
		done, status = cond()
		return done, nil
	})
	if err != nil {
		t.Fatalf("%s: not done after %s: %s", what, limit, status)
	}
}
