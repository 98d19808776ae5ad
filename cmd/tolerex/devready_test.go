package main

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tolerex/tolerex/cluster/local"
)

// TestDevEventLines: the lines dev prints for what its supervisor
// reports (e2e/cli_test.go and e2e/firstrun_test.go match them).
func TestDevEventLines(t *testing.T) {
	gw := &local.Node{Name: "gateway", NodeAddr: "127.0.0.1:7000", AdminAddr: "127.0.0.1:8000", LogPath: "data/dev/logs/gateway.log"}
	m1 := &local.Node{Name: "member-1", NodeAddr: "127.0.0.1:7001", AdminAddr: "127.0.0.1:8001", LogPath: "data/dev/logs/member-1.log"}
	for _, tc := range []struct {
		event local.Event
		want  string
	}{
		{local.Event{Kind: local.Started, Node: gw, Pid: 41},
			"gateway   started pid=41 node=127.0.0.1:7000 admin=127.0.0.1:8000 log=data/dev/logs/gateway.log"},
		{local.Event{Kind: local.Started, Node: m1, Pid: 42, Restarts: 2},
			"member-1  restarted (restart #2) pid=42 node=127.0.0.1:7001 admin=127.0.0.1:8001 log=data/dev/logs/member-1.log"},
		{local.Event{Kind: local.Exited, Node: m1, Err: errors.New("signal: killed"), Backoff: time.Second},
			"member-1 exited (signal: killed); restarting in 1s"},
		{local.Event{Kind: local.Stopped, Node: gw}, "gateway stopped"},
		{local.Event{Kind: local.Stopped, Node: gw, Err: fmt.Errorf("stop gateway: %w", local.ErrStillRunning)},
			"gateway did not stop within 10s; killed"},
		{local.Event{Kind: local.NotReady, Node: gw, For: 10200 * time.Millisecond, Reason: "not ready: leader not active yet"},
			"gateway   not ready for 10s: not ready: leader not active yet (admin 127.0.0.1:8000)"},
		{local.Event{Kind: local.ReadyAgain, Node: m1, For: 27 * time.Second},
			"member-1  ready again (was not ready for 27s)"},
		{local.Event{Kind: local.ReadyAgain, Node: m1, For: 200 * time.Millisecond},
			"member-1  ready again (was not ready for 1s)"},
	} {
		if got := devEventLine(tc.event, 10*time.Second); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
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
