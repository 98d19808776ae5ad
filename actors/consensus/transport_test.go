package consensus

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func appendTo(to, commit uint64, entries int) *raftpb.Message {
	m := &raftpb.Message{Type: raftpb.MsgApp.Enum(), To: new(to), From: new(uint64(1)), Commit: new(commit), Index: new(commit)}
	for i := range entries {
		m.Entries = append(m.Entries, &raftpb.Entry{Index: new(commit + uint64(i) + 1), Data: []byte("x")})
	}
	return m
}

// queued decodes what the transport would send to gateway to.
func queued(t *testing.T, p *peers, to uint64) []*raftpb.Message {
	t.Helper()
	var out []*raftpb.Message
	for _, data := range p.pending[to] {
		var m raftpb.Message
		if err := proto.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, &m)
	}
	return out
}

func TestCommitNoticeHeldUntilReleased(t *testing.T) {
	p := newPeers(1, zerolog.Nop())
	p.send(appendTo(2, 7, 0))
	p.send(&raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), To: new(uint64(2)), Commit: new(uint64(7))})
	if got := queued(t, p, 2); len(got) != 1 || got[0].GetType() != raftpb.MsgHeartbeat {
		t.Fatalf("queued before release: %v, want only the heartbeat", got)
	}
	if !p.holdsNotices() {
		t.Fatal("the commit notice is not held")
	}
	p.releaseNotices()
	got := queued(t, p, 2)
	if len(got) != 2 || got[1].GetType() != raftpb.MsgApp || got[1].GetCommit() != 7 {
		t.Fatalf("queued after release: %v, want the heartbeat and the commit notice for 7", got)
	}
	if p.holdsNotices() {
		t.Fatal("notices still held after release")
	}
}

func TestCommitNoticeReplacedByLaterAppend(t *testing.T) {
	p := newPeers(1, zerolog.Nop())
	p.send(appendTo(2, 7, 0))
	p.send(appendTo(3, 7, 0))
	p.send(appendTo(2, 8, 0)) // a later notice replaces the earlier one
	p.send(appendTo(3, 8, 2)) // an append with entries carries the commit
	p.releaseNotices()
	to2, to3 := queued(t, p, 2), queued(t, p, 3)
	if len(to2) != 1 || to2[0].GetCommit() != 8 || len(to2[0].GetEntries()) != 0 {
		t.Fatalf("to gateway 2: %v, want one notice for 8", to2)
	}
	if len(to3) != 1 || len(to3[0].GetEntries()) != 2 {
		t.Fatalf("to gateway 3: %v, want only the append with entries", to3)
	}
}

func TestPeersSendOnlyToGatewaysFoundUp(t *testing.T) {
	p := newPeers(1, zerolog.Nop())
	p.set(2, "a:1")
	p.set(3, "b:1")
	t0 := time.Unix(1000, 0)
	due := func(at time.Duration, want ...string) {
		t.Helper()
		got := p.probesDue(t0.Add(at))
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("probes due at %v: %v, want %v", at, got, want)
		}
	}
	isUp := func(id uint64, want bool) {
		t.Helper()
		if got := p.up(id) != nil; got != want {
			t.Fatalf("gateway %d up: %v, want %v", id, got, want)
		}
	}
	// Unknown at the start: down until probed, both probed at once.
	isUp(2, false)
	isUp(3, false)
	due(0, "a:1", "b:1")
	due(500 * time.Millisecond) // in flight: not again
	p.probed(&peerProbed{address: "a:1"})
	p.probed(&peerProbed{address: "b:1", err: errors.New("connection refused")})
	isUp(2, true)
	isUp(3, false)
	due(time.Second, "b:1")
	due(time.Second) // in flight
	p.probed(&peerProbed{address: "b:1", err: errors.New("connection refused")})
	due(time.Second + downProbeInterval/2) // not within the interval
	// Why it is unreachable is kept, the latest reason only.
	reasons := func(want string) {
		t.Helper()
		if got := p.unreachableReasons(); got != want {
			t.Fatalf("unreachable: %q, want %q", got, want)
		}
	}
	reasons("gateway 3 at b:1: connection refused")
	due(2*time.Second, "b:1")
	p.probed(&peerProbed{address: "b:1", err: errors.New("tls: certificate signed by unknown authority")})
	reasons("gateway 3 at b:1: tls: certificate signed by unknown authority")
	// A message from it makes it up without a probe, and clears the
	// reason.
	if !p.heard(3) {
		t.Fatal("heard from a gateway that was down: no change reported")
	}
	isUp(3, true)
	reasons("")
	if p.heard(3) {
		t.Fatal("heard from a gateway that was up: a change reported")
	}
	due(2 * time.Second)
	// The connection broke: down, probed again, up once it accepts.
	p.down("a:1", &node{})
	isUp(2, false)
	due(3*time.Second, "a:1")
	p.probed(&peerProbed{address: "a:1", err: errors.New("i/o timeout")})
	reasons("gateway 2 at a:1: i/o timeout")
	due(4*time.Second, "a:1")
	p.probed(&peerProbed{address: "a:1"})
	isUp(2, true)
	reasons("")
	// An outcome for an address no longer in the group changes nothing.
	p.probed(&peerProbed{address: "gone:1"})
	due(5 * time.Second)
}
