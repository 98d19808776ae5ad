package poll

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUntilDone(t *testing.T) {
	calls := 0
	err := Until(context.Background(), time.Second, time.Millisecond, "third call", func() (bool, error) {
		calls++
		return calls == 3, nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("err %v after %d calls", err, calls)
	}
}

func TestUntilTimeoutQuotesLastReason(t *testing.T) {
	err := Until(context.Background(), 20*time.Millisecond, time.Millisecond, "never", func() (bool, error) {
		return false, errors.New("still busy")
	})
	if err == nil || !strings.Contains(err.Error(), "never: not within 20ms: still busy") {
		t.Fatalf("err = %v", err)
	}
}

func TestUntilAbort(t *testing.T) {
	gone := errors.New("process exited")
	calls := 0
	err := Until(context.Background(), time.Second, time.Millisecond, "ready", func() (bool, error) {
		calls++
		return false, Abort(gone)
	})
	if !errors.Is(err, gone) || calls != 1 {
		t.Fatalf("err %v after %d calls", err, calls)
	}
}

func TestUntilContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Until(ctx, time.Second, time.Millisecond, "ready", func() (bool, error) { return false, nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}
