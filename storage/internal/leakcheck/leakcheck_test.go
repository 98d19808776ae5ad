package leakcheck

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

type recorder struct{ failure string }

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failure = fmt.Sprintf(format, args...)
}

func TestGoroutinesReportsALeak(t *testing.T) {
	before := runtime.NumGoroutine()
	release := make(chan struct{})
	go func() { <-release }()
	var rec recorder
	Goroutines(&rec, before)
	close(release)
	if !strings.Contains(rec.failure, "goroutines before") || !strings.Contains(rec.failure, "TestGoroutinesReportsALeak") {
		t.Fatalf("a leaked goroutine reported as %q", rec.failure)
	}
}

func TestGoroutinesPassesWhenTheyEnd(t *testing.T) {
	before := runtime.NumGoroutine()
	done := make(chan struct{})
	go func() { close(done) }()
	<-done
	var rec recorder
	Goroutines(&rec, before)
	if rec.failure != "" {
		t.Fatalf("no leak reported as %q", rec.failure)
	}
}
