package consensus

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/storage/diskspace"
)

func TestSpaceWantedAfterENOSPC(t *testing.T) {
	mark := diskspace.NewWatermark(1000) // resumes at 1250
	free := func(n uint64) diskspace.State {
		return diskspace.State{Usage: diskspace.Usage{Free: n}, Checked: true}
	}
	tests := []struct {
		name string
		st   diskspace.State
		mark diskspace.Watermark
		want string // a part of the reason; "" to reopen
	}{
		{"no room", free(0), mark, "until 1250 bytes are free on the Raft log's filesystem (0 now)"},
		{"above the watermark, below the resume mark", free(1100), mark, "(1100 now)"},
		{"at the resume mark", free(1250), mark, ""},
		{"plenty", free(1 << 30), mark, ""},
		{"statfs never answered", diskspace.State{Err: errors.New("statfs: EIO")}, mark, "(0 now)"},
		{"watermark off", free(1 << 30), diskspace.NewWatermark(0), "restart it once space is freed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := spaceWanted(tt.st, tt.mark)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("spaceWanted = %q, want %q", got, tt.want)
			}
			if got != "" && !strings.HasPrefix(got, "disk full: ") {
				t.Errorf("reason %q does not start with the definite prefix", got)
			}
		})
	}
}

// TestWaitsForSpaceThenRunsAgain starts the consensus actor as its
// supervisor restarts it after a Raft log write failed with ENOSPC
// (restartState.noSpace, as written sets it), on a filesystem whose statfs
// reports less than the resume mark free. Expected: it runs no Raft and a
// subscriber hears Unavailable with the reason; once statfs reports room,
// the next check (every second) reopens the log: the subscriber hears
// Available, then that this gateway leads (a group of one).
func TestWaitsForSpaceThenRunsAgain(t *testing.T) {
	var free atomic.Uint64
	cfg := Config{ID: 1, NodeAddress: "127.0.0.1:1", Peers: []Peer{{ID: 1, NodeAddress: "127.0.0.1:1"}}, Dir: t.TempDir(),
		MinFreeBytes: 1000, View: NewStateView(), Health: &Health{}, Logger: zerolog.Nop(),
		Statfs: func(string) (diskspace.Usage, error) { return diskspace.Usage{Free: free.Load(), Total: 1 << 30}, nil }}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	system := actor.NewActorSystem()
	events := make(chan any, 64)
	subscriber := system.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		switch m := c.Message().(type) {
		case *Unavailable, *Available, *LeaderChanged:
			events <- m
		}
	}))
	pid := system.Root.Spawn(actor.PropsFromProducer(producer(cfg, &restartState{noSpace: true})))
	t.Cleanup(func() { _ = system.Root.StopFuture(pid).Wait() })
	system.Root.RequestWithCustomSender(pid, &Subscribe{}, subscriber)

	next := func(what string) any {
		t.Helper()
		select {
		case m := <-events:
			return m
		case <-time.After(10 * time.Second):
			t.Fatalf("no event within 10s; want %s", what)
			return nil
		}
	}
	u, ok := next("Unavailable").(*Unavailable)
	if !ok || !strings.Contains(u.Reason, "runs no Raft until 1250 bytes are free on the Raft log's filesystem (0 now)") {
		t.Fatalf("first event %#v, want Unavailable with the reason", u)
	}
	if err := cfg.Health.NotReady(); err == nil || !strings.Contains(err.Error(), "(0 now)") {
		t.Errorf("health %v, want not ready with the reason", err)
	}
	free.Store(1 << 20)
	for m := next("Available"); ; m = next("Available") {
		if _, ok := m.(*Available); ok {
			break
		}
		if u, ok := m.(*Unavailable); !ok || !strings.HasPrefix(u.Reason, "disk full: ") {
			t.Fatalf("event %#v before Available", m)
		}
	}
	for m := next("LeaderChanged naming this gateway"); ; m = next("LeaderChanged naming this gateway") {
		if lc, ok := m.(*LeaderChanged); ok && lc.Local && lc.Lead == 1 {
			break
		}
	}
	if err := cfg.Health.NotReady(); err != nil {
		t.Errorf("health after space came back: %v, want ready", err)
	}
}
