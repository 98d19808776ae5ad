package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tolerex/tolerex/cluster/certs"
	"github.com/tolerex/tolerex/cluster/local/poll"
)

// flagValue returns the value after flag in args ("" if absent).
func flagValue(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

func TestNewPlacesNodes(t *testing.T) {
	cfg := fakeConfig(t, 3, 2)
	cfg.Insecure = false
	cfg.GatewayArgs = []string{"--balancer", "p2c"}
	cfg.MemberArgs = []string{"--fault-injection"}
	cfg.NoPrompt = true
	cfg.DataDirs = map[string]string{"member-2": "/mnt/m2"}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "tls", certs.CACertFile)); err != nil {
		t.Fatalf("no CA certificate: %v", err)
	}
	var names []string
	for _, n := range c.Nodes() {
		names = append(names, n.Name)
	}
	if want := []string{"gateway-1", "gateway-2", "gateway-3", "member-1", "member-2"}; !slices.Equal(names, want) {
		t.Fatalf("names %v, want %v", names, want)
	}
	g2 := c.Gateways[1]
	args := g2.Args()
	if args[0] != "gateway" || flagValue(args, "--client-addr") != g2.ClientAddr || flagValue(args, "--gateway-id") != "2" ||
		flagValue(args, "--tls-dir") != c.TLSDir || flagValue(args, "--data-dir") != filepath.Join(cfg.Dir, "gateway-2") ||
		!slices.Contains(args, "--no-prompt") || flagValue(args, "--balancer") != "p2c" || flagValue(args, "--tolerance") != "1" {
		t.Errorf("gateway-2 args: %v", args)
	}
	initial := flagValue(args, "--initial-cluster")
	if want := "1=" + c.Gateways[0].NodeAddr + ",2=" + g2.NodeAddr + ",3=" + c.Gateways[2].NodeAddr; initial != want {
		t.Errorf("--initial-cluster %s, want %s", initial, want)
	}
	m2 := c.Members[1]
	args = m2.Args()
	if args[0] != "member" || flagValue(args, "--join") != strings.Join([]string{c.Gateways[0].NodeAddr, g2.NodeAddr, c.Gateways[2].NodeAddr}, ",") ||
		m2.DataDir != "/mnt/m2" || flagValue(args, "--data-dir") != "/mnt/m2" || args[len(args)-1] != "--fault-injection" {
		t.Errorf("member-2 args: %v (data dir %s)", args, m2.DataDir)
	}
	ports := map[int]bool{}
	for _, n := range c.Nodes() {
		for _, p := range n.Ports() {
			if ports[p] {
				t.Errorf("port %d given twice", p)
			}
			ports[p] = true
		}
	}
	if len(ports) != 3*3+2*2 || len(c.ListenAddrs()) != len(ports) {
		t.Errorf("%d ports, %d listen addresses; want %d", len(ports), len(c.ListenAddrs()), 3*3+2*2)
	}
	m3, err := c.AddMember()
	if err != nil || m3.Name != "member-3" || flagValue(m3.Args(), "--join") != flagValue(args, "--join") {
		t.Errorf("added %+v: %v", m3, err)
	}
}

func TestNewLoneGatewayInsecure(t *testing.T) {
	cfg := fakeConfig(t, 1, 1)
	cfg.LoneGatewayName = "gateway"
	cfg.LogDir = filepath.Join(cfg.Dir, "logs")
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g := c.Gateways[0]
	if g.Name != "gateway" || g.LogPath != filepath.Join(cfg.Dir, "logs", "gateway.log") || !slices.Contains(g.Args(), "--insecure") {
		t.Errorf("gateway %s, log %s, args %v", g.Name, g.LogPath, g.Args())
	}
	if _, err := os.Stat(c.TLSDir); !os.IsNotExist(err) {
		t.Errorf("an insecure cluster has a TLS dir: %v", err)
	}
	if _, err := New(Config{Binary: "x", Dir: t.TempDir(), Gateways: 3, Members: 1, Tolerance: 1}); err == nil {
		t.Error("three gateways without group flags")
	}
}

func TestNodeLifecycle(t *testing.T) {
	cfg := fakeConfig(t, 1, 2)
	cfg.RestartMarker = "local test"
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.KillAll() })
	ctx := context.Background()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Gateways[0].Start(); err == nil {
		t.Error("a running node started twice")
	}
	m1, m2 := c.Members[0], c.Members[1]

	// Killed by the launcher: not an exit of its own.
	if err := m1.Kill(); err != nil {
		t.Fatal(err)
	}
	if exited, _ := m1.Exited(); exited || m1.Running() || m1.Pid() != 0 {
		t.Errorf("killed: exited %v, running %v, pid %d", exited, m1.Running(), m1.Pid())
	}
	if ok, reason := m1.Ready(ctx); ok || reason != "not running" {
		t.Errorf("killed node ready %v: %q", ok, reason)
	}
	if ok, reason := c.Healthy(ctx); ok || !strings.Contains(reason, "member-1") {
		t.Errorf("healthy %v: %q", ok, reason)
	}
	if err := m1.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m1.WaitReady(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m1.Log(), "==== local test: restarting member-1 at ") {
		t.Errorf("no restart marker in the log:\n%s", m1.Log())
	}

	// An exit of its own is on record, with its status.
	_, _ = m2.Post(ctx, "/debug/exit") // it may exit before it answers
	if err := poll.Until(ctx, 10*time.Second, 10*time.Millisecond, "member-2 exited", func() (bool, error) {
		exited, _ := m2.Exited()
		return exited, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Exited(); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("exit error %v", err)
	}
	exits := c.Exits()
	if len(exits) != 1 || exits[0].Node != "member-2" || exits[0].Err != "exit status 3" || !strings.Contains(exits[0].LogTail, "fake node") {
		t.Errorf("exits %+v", exits)
	}
	// WaitReady gives up at once on a process that exited.
	if err := m2.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m2.WaitReady(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	_, _ = m2.Post(ctx, "/debug/exit") // it may exit before it answers
	started := time.Now()
	if err := m2.WaitReady(ctx, 30*time.Second); err == nil || !strings.Contains(err.Error(), "exited while starting: exit status 3") ||
		time.Since(started) > 10*time.Second {
		t.Errorf("WaitReady of an exited node: %v after %s", err, time.Since(started))
	}
	if err := m2.Restart(); err != nil {
		t.Fatal(err)
	}

	// Pause and resume; Stop of a paused node still stops it cleanly.
	g := c.Gateways[0]
	if err := g.Pause(); err != nil || !g.Paused() {
		t.Fatalf("pause: %v", err)
	}
	if ok, reason := g.Ready(ctx); ok || reason != "paused" {
		t.Errorf("paused node ready %v: %q", ok, reason)
	}
	if err := g.Resume(); err != nil || g.Paused() {
		t.Fatalf("resume: %v", err)
	}
	if err := g.WaitReady(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := g.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := g.Stop(10 * time.Second); err != nil {
		t.Errorf("stop of a paused node: %v", err)
	}
	if err := g.Stop(time.Second); err != nil {
		t.Errorf("stop of a stopped node: %v", err)
	}
	if err := g.Resume(); err == nil {
		t.Error("resumed a node that is not running")
	}
	if len(c.Exits()) != 2 { // member-2, twice
		t.Errorf("exits after kills and stops: %+v", c.Exits())
	}
}

func TestAdminViewOfAProcessStartedElsewhere(t *testing.T) {
	cfg := fakeConfig(t, 1, 1)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.KillAll() })
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	view := &Node{Name: "view", AdminAddr: c.Members[0].AdminAddr}
	gw := &Node{Name: "gw", AdminAddr: c.Gateways[0].AdminAddr}
	for _, n := range []*Node{view, gw} {
		if err := n.WaitReady(context.Background(), 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	var st status
	if err := gw.GetJSON(context.Background(), "/api/cluster", &st); err != nil || !st.Active {
		t.Errorf("status %+v: %v", st, err)
	}
	if _, status, err := view.Get(context.Background(), "/nothing"); err != nil || status != 404 {
		t.Errorf("GET /nothing: %d %v", status, err)
	}
}

func TestSupervisorRestartsAndReports(t *testing.T) {
	cfg := fakeConfig(t, 1, 1)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.KillAll() })
	events := make(chan Event, 100)
	s := Supervisor{MinBackoff: 50 * time.Millisecond, NotReadyAfter: time.Second, ReadyPoll: 50 * time.Millisecond,
		Report: func(e Event) { events <- e }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		c.Supervise(ctx, s)
		close(done)
	}()
	next := func(kind EventKind, node string) Event {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case e := <-events:
				if e.Kind == kind && e.Node.Name == node {
					return e
				}
				if e.Kind == Exited && e.Node.Name != node {
					t.Fatalf("unexpected exit: %s %v", e.Node.Name, e.Err)
				}
			case <-timeout:
				t.Fatalf("no event %d for %s", kind, node)
			}
		}
	}
	m := c.Members[0]
	first := next(Started, "member-1")
	if first.Restarts != 0 || first.Pid == 0 {
		t.Errorf("first start %+v", first)
	}
	if err := c.WaitHealthy(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(first.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	exit := next(Exited, "member-1")
	if exit.Err == nil || !strings.Contains(exit.Err.Error(), "killed") || exit.Backoff != 50*time.Millisecond {
		t.Errorf("exit %+v", exit)
	}
	again := next(Started, "member-1")
	if again.Restarts != 1 || again.Pid == first.Pid {
		t.Errorf("restart %+v", again)
	}
	if len(c.Exits()) != 0 {
		t.Errorf("a supervised node's exit went to Exits: %+v", c.Exits())
	}

	if err := m.WaitReady(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Post(ctx, "/debug/not-ready"); err != nil {
		t.Fatal(err)
	}
	// (A slow start may be reported first; then its end is too.)
	nr := next(NotReady, "member-1")
	for nr.Reason != "not ready: told so" {
		next(ReadyAgain, "member-1")
		nr = next(NotReady, "member-1")
	}
	if nr.For < time.Second {
		t.Errorf("not ready %+v", nr)
	}
	if _, err := m.Post(ctx, "/debug/ready"); err != nil {
		t.Fatal(err)
	}
	if ra := next(ReadyAgain, "member-1"); ra.For < nr.For {
		t.Errorf("ready again %+v after %+v", ra, nr)
	}

	cancel()
	for range 2 {
		e := <-events
		for e.Kind != Stopped {
			e = <-events
		}
		if e.Err != nil || !e.StoppedInTime() {
			t.Errorf("%s stopped: %v", e.Node.Name, e.Err)
		}
	}
	<-done
	if c.Gateways[0].Running() || m.Running() {
		t.Error("processes run after the supervision ended")
	}
}

// TestReadinessWatch: one report after `after` of not being ready, none
// while it stays so, one when it is ready again; a restart gives a new
// process the full time without repeating a report already made.
func TestReadinessWatch(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 16, 22, 49, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	sec := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	w := &readinessWatch{after: 10 * time.Second}
	w.started(at(0))
	steps := []struct {
		at    float64
		ready bool
		want  *Event
	}{
		{1, false, nil},
		{9.5, false, nil},
		{10.2, false, &Event{Kind: NotReady, For: sec(10.2), Reason: "r"}},
		{11, false, nil}, // not repeated
		{40, false, nil},
		{41, true, &Event{Kind: ReadyAgain, For: sec(41)}},
		{42, true, nil},
		// Ready, then not: the clock starts at the first failed poll.
		{50, false, nil},
		{59, false, nil},
		{60, false, &Event{Kind: NotReady, For: sec(10), Reason: "r"}},
		{61, true, &Event{Kind: ReadyAgain, For: sec(11)}},
	}
	for _, s := range steps {
		got, ok := w.observe(at(s.at), s.ready, "r")
		switch {
		case s.want == nil && ok:
			t.Errorf("at %vs: %+v, want nothing", s.at, got)
		case s.want != nil && (!ok || got != *s.want):
			t.Errorf("at %vs: %+v (%v), want %+v", s.at, got, ok, *s.want)
		}
	}

	// A restart before the report gives the new process the full time.
	w = &readinessWatch{after: 10 * time.Second}
	w.started(at(0))
	w.observe(at(8), false, "r")
	w.started(at(9)) // the process died and was restarted
	if got, ok := w.observe(at(15), false, "r"); ok {
		t.Errorf("6s after a restart: %+v, want nothing yet", got)
	}
	if _, ok := w.observe(at(19), false, "r"); !ok {
		t.Errorf("10s after a restart: no report")
	}
	// A restart after the report does not repeat it; the stretch goes on
	// from the restart at 9s.
	w.started(at(20))
	if got, ok := w.observe(at(35), false, "r"); ok {
		t.Errorf("after a restart of a reported process: %+v, want no repeat", got)
	}
	if got, ok := w.observe(at(36), true, ""); !ok || got.For != sec(27) {
		t.Errorf("ready after the restart: %+v %v", got, ok)
	}
}

func TestStoppedInTime(t *testing.T) {
	if !(Event{Kind: Stopped}).StoppedInTime() || (Event{Kind: Stopped, Err: errors.Join(ErrStillRunning)}).StoppedInTime() {
		t.Error("StoppedInTime")
	}
}
