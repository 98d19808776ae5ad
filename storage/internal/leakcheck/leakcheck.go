// Package leakcheck fails a test whose goroutines outlive the stores it
// closed: Pebble ends its background goroutines only after Close returns,
// so the check waits for them (with poll.Eventually) before it fails.
package leakcheck

import (
	"fmt"
	"runtime"
	"time"

	"github.com/tolerex/tolerex/cluster/local/poll"
)

// Goroutines waits up to 5 s for the number of goroutines to fall back to
// before (counted before the test opened anything), and fails t with every
// goroutine's stack if it does not.
func Goroutines(t poll.T, before int) {
	t.Helper()
	poll.Eventually(t, 5*time.Second, 10*time.Millisecond, "goroutines back to the count before the test", func() (bool, string) {
		now := runtime.NumGoroutine()
		if now <= before {
			return true, ""
		}
		buf := make([]byte, 1<<20)
		return false, fmt.Sprintf("%d goroutines before, %d now:\n%s", before, now, buf[:runtime.Stack(buf, true)])
	})
}
