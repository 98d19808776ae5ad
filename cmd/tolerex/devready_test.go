package main

import (
	"testing"
	"time"
)

// TestReadinessWatch: one line after `after` of not being ready, none
// while it stays so, one when it is ready again; a restart gives a new
// process the full time without repeating a line already printed.
func TestReadinessWatch(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 16, 22, 49, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	w := &readinessWatch{name: "gateway", adminAddr: "127.0.0.1:8000", after: 10 * time.Second}
	w.started(at(0))
	steps := []struct {
		at     float64
		ready  bool
		reason string
		want   string
	}{
		{1, false, "admin address not answering: connection refused", ""},
		{9.5, false, "not ready: leader not active yet", ""},
		{10.2, false, "not ready: leader not active yet",
			"gateway   not ready for 10s: not ready: leader not active yet (admin 127.0.0.1:8000)"},
		{11, false, "not ready: leader not active yet", ""}, // not repeated
		{40, false, "not ready: something else", ""},
		{41, true, "", "gateway   ready again (was not ready for 41s)"},
		{42, true, "", ""},
		// Ready, then not: the clock starts at the first failed poll.
		{50, false, "not ready: 1 live members, tolerance 2", ""},
		{59, false, "not ready: 1 live members, tolerance 2", ""},
		{60, false, "not ready: 1 live members, tolerance 2",
			"gateway   not ready for 10s: not ready: 1 live members, tolerance 2 (admin 127.0.0.1:8000)"},
		{61, true, "", "gateway   ready again (was not ready for 11s)"},
	}
	for _, s := range steps {
		if got := w.observe(at(s.at), s.ready, s.reason); got != s.want {
			t.Errorf("at %vs ready=%v: %q, want %q", s.at, s.ready, got, s.want)
		}
	}

	// A restart before the report gives the new process the full time.
	w = &readinessWatch{name: "member-1", adminAddr: "127.0.0.1:8001", after: 10 * time.Second}
	w.started(at(0))
	w.observe(at(8), false, "not ready: storage not open")
	w.started(at(9)) // the process died and was restarted
	if got := w.observe(at(15), false, "not ready: storage not open"); got != "" {
		t.Errorf("6s after a restart: %q, want nothing yet", got)
	}
	if got := w.observe(at(19), false, "not ready: storage not open"); got == "" {
		t.Errorf("10s after a restart: no line")
	}
	// A restart after the report does not repeat it; the stretch goes on
	// from the restart at 9s.
	w.started(at(20))
	if got := w.observe(at(35), false, "not ready: storage not open"); got != "" {
		t.Errorf("after a restart of a reported process: %q, want no repeat", got)
	}
	if got := w.observe(at(36), true, ""); got != "member-1  ready again (was not ready for 27s)" {
		t.Errorf("ready after the restart: %q", got)
	}
}

func TestInvocationName(t *testing.T) {
	for _, tc := range []struct{ arg0, cwd, want string }{
		{"tolerex", "/home/u/tolerex", "tolerex"},         // found on PATH
		{"bin/tolerex", "/home/u/tolerex", "bin/tolerex"}, // make run
		{"./tolerex", "/home/u/tolerex/bin", "./tolerex"}, // keeps ./
		{"/home/u/tolerex/bin/tolerex", "/home/u/tolerex", "bin/tolerex"},
		{"/opt/tolerex/tolerex", "/home/u", "/opt/tolerex/tolerex"}, // outside cwd
		{"../tolerex/bin/tolerex", "/home/u/x", "/home/u/tolerex/bin/tolerex"},
		{"bin/tolerex", "", "bin/tolerex"},
	} {
		if got := invocationName(tc.arg0, tc.cwd); got != tc.want {
			t.Errorf("invocationName(%q, %q) = %q, want %q", tc.arg0, tc.cwd, got, tc.want)
		}
	}
}
