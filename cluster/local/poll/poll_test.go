package poll

import (
	"context"
	"errors"
	"fmt"
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

// fatalRecorder is a T that records the failure instead of ending a test.
type fatalRecorder struct{ failure string }

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.failure = fmt.Sprintf(format, args...)
}

func TestEventuallyFailsWithTheLastStatus(t *testing.T) {
	var rec fatalRecorder
	calls := 0
	Eventually(&rec, 30*time.Millisecond, time.Millisecond, "the answer", func() (bool, string) {
		calls++
		return false, fmt.Sprintf("asked %d times", calls)
	})
	want := fmt.Sprintf("the answer: not done after 30ms: asked %d times", calls)
	if rec.failure != want {
		t.Fatalf("failure %q, want %q", rec.failure, want)
	}
}

func TestEventuallyDone(t *testing.T) {
	var rec fatalRecorder
	calls := 0
	Eventually(&rec, time.Second, time.Millisecond, "three calls", func() (bool, string) {
		calls++
		return calls == 3, ""
	})
	if rec.failure != "" || calls != 3 {
		t.Fatalf("failure %q after %d calls, want none after 3", rec.failure, calls)
	}
}
