package consensus

import (
	"testing"

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
