package consensus

import (
	"encoding/binary"
	"io"
	"log"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// answers is a sender that keeps what the barriers answered.
type answers struct{ sent []interface{} }

func (a *answers) Send(_ *actor.PID, message interface{}) { a.sent = append(a.sent, message) }

// playedLeader is a RawNode (id 1) leading a group of three voters whose
// other two the test plays by hand: nothing reaches gateway 1 unless the
// test steps it. Its storage is written synchronously.
type playedLeader struct {
	t  *testing.T
	rn *raft.RawNode
	ms *raft.MemoryStorage
	// out is what gateway 1 sent to the others, and states the read
	// states Raft reported, since the test last took them.
	out    []*raftpb.Message
	states []raft.ReadState
}

func newPlayedLeader(t *testing.T) *playedLeader {
	t.Helper()
	ms := raft.NewMemoryStorage()
	one := new(uint64(1))
	if err := ms.ApplySnapshot(&raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
		ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}, Index: one, Term: one,
	}}); err != nil {
		t.Fatal(err)
	}
	rn, err := raft.NewRawNode(&raft.Config{
		ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: ms,
		MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 256,
		CheckQuorum: true, ReadOnlyOption: raft.ReadOnlySafe,
		Logger: &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := &playedLeader{t: t, rn: rn, ms: ms}
	if err := rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	p.settle()
	term := rn.Status().GetTerm()
	p.step(&raftpb.Message{Type: raftpb.MsgVoteResp.Enum(), From: new(uint64(2)), To: one, Term: new(term)})
	if rn.Status().RaftState != raft.StateLeader {
		t.Fatalf("gateway 1 is %v after a vote from gateway 2, want leader", rn.Status().RaftState)
	}
	// Gateway 2 takes the leader's empty entry: the term's first commit,
	// without which Raft postpones every ReadIndex.
	last, err := ms.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	p.step(&raftpb.Message{Type: raftpb.MsgAppResp.Enum(), From: new(uint64(2)), To: one, Term: new(term), Index: new(last)})
	if got := rn.Status().GetCommit(); got != last {
		t.Fatalf("commit %d after gateway 2 took the entry, want %d", got, last)
	}
	p.take()
	return p
}

// step hands gateway 1 a message and handles what follows.
func (p *playedLeader) step(m *raftpb.Message) {
	p.t.Helper()
	if err := p.rn.Step(m); err != nil {
		p.t.Fatalf("step %v: %v", m.GetType(), err)
	}
	p.settle()
}

// settle handles every Ready: entries and hard state stored, messages and
// read states kept for the test.
func (p *playedLeader) settle() {
	p.t.Helper()
	for p.rn.HasReady() {
		rd := p.rn.Ready()
		if err := p.ms.Append(rd.Entries); err != nil {
			p.t.Fatal(err)
		}
		if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
			if err := p.ms.SetHardState(rd.HardState); err != nil {
				p.t.Fatal(err)
			}
		}
		p.out = append(p.out, rd.Messages...)
		p.states = append(p.states, rd.ReadStates...)
		p.rn.Advance(rd)
	}
}

// take returns and forgets what gateway 1 sent and the read states.
func (p *playedLeader) take() ([]*raftpb.Message, []raft.ReadState) {
	out, states := p.out, p.states
	p.out, p.states = nil, nil
	return out, states
}

// heartbeatsAnswered has gateways 2 and 3 answer every heartbeat gateway 1
// sent, with its context, as followers would.
func (p *playedLeader) heartbeatsAnswered(sent []*raftpb.Message) {
	p.t.Helper()
	for _, m := range sent {
		if m.GetType() != raftpb.MsgHeartbeat {
			continue
		}
		p.step(&raftpb.Message{Type: raftpb.MsgHeartbeatResp.Enum(), From: new(m.GetTo()), To: new(uint64(1)),
			Term: new(m.GetTerm()), Context: m.GetContext()})
	}
}

// node wraps the played leader as the consensus actor's node sees it.
func (p *playedLeader) node() *node {
	return &node{rn: p.rn, isLeader: true, ready: true}
}

// readCtx is the context a read state answers.
func readCtx(rs raft.ReadState) uint64 { return binary.BigEndian.Uint64(rs.RequestCtx) }

// TestBarrierUnansweredIsAskedAgainUnderAFreshContext: a ReadIndex Raft
// leaves unanswered (here: its read state withheld, as Raft would drop
// it) is asked again after barrierRetryTicks under a new context; the
// barrier is released once, on the new context's answer, and an answer
// to the old context that arrives anyway is ignored.
func TestBarrierUnansweredIsAskedAgainUnderAFreshContext(t *testing.T) {
	for _, oldAnswered := range []bool{false, true} {
		name := "old context never answered"
		if oldAnswered {
			name = "old context answered late too"
		}
		t.Run(name, func(t *testing.T) {
			p := newPlayedLeader(t)
			n, b, got := p.node(), newBarriers(), &answers{}
			b.add(got, n, 7, nil)
			p.settle()
			first, _ := p.take()
			if b.byCtx[1] == nil || len(first) == 0 {
				t.Fatalf("barrier 7 asked under contexts %v with %d heartbeats, want context 1 and heartbeats", b.byCtx, len(first))
			}
			// Nothing answers: no tick short of barrierRetryTicks asks again.
			for i := 1; i < barrierRetryTicks; i++ {
				n.ticks++
				b.retry(n)
				p.settle()
				p.take()
				if b.nextCtx != 1 {
					t.Fatalf("asked again after %d ticks, want after %d", i, barrierRetryTicks)
				}
			}
			n.ticks++
			b.retry(n)
			p.settle()
			again, _ := p.take()
			if b.nextCtx != 2 || b.byCtx[1] != nil || b.byCtx[2] == nil || b.byCtx[2].id != 7 {
				t.Fatalf("after %d ticks: contexts %v (last %d), want barrier 7 asked again under context 2 only", barrierRetryTicks, b.byCtx, b.nextCtx)
			}
			// The followers answer the heartbeats of the new ask. Raft
			// confirms both asks at once; unless the test lets the old
			// one through, it is withheld, as Raft would lose it.
			p.heartbeatsAnswered(again)
			_, states := p.take()
			var kept []raft.ReadState
			for _, rs := range states {
				if oldAnswered || readCtx(rs) != 1 {
					kept = append(kept, rs)
				}
			}
			if len(kept) == 0 {
				t.Fatalf("no read state for the new context after the heartbeats were answered: %v", states)
			}
			b.confirmed(kept)
			b.release(got, p.rn.Status().GetCommit(), nil)
			if len(got.sent) != 1 {
				t.Fatalf("answers %v, want one BarrierDone", got.sent)
			}
			if done, ok := got.sent[0].(*BarrierDone); !ok || done.ID != 7 {
				t.Fatalf("answer %#v, want BarrierDone for 7", got.sent[0])
			}
			if len(b.byCtx) != 0 || len(b.ready) != 0 {
				t.Fatalf("left waiting: contexts %v, ready %v", b.byCtx, b.ready)
			}
		})
	}
}

// TestBarrierNotRetriedOffTheLeader: a gateway that lost leadership asks
// nothing again (the barriers fail with the leadership instead).
func TestBarrierNotRetriedOffTheLeader(t *testing.T) {
	p := newPlayedLeader(t)
	n, b, got := p.node(), newBarriers(), &answers{}
	b.add(got, n, 7, nil)
	p.settle()
	p.take()
	n.isLeader = false
	n.ticks += 10 * barrierRetryTicks
	b.retry(n)
	if b.nextCtx != 1 {
		t.Fatalf("asked again under context %d off the leader", b.nextCtx)
	}
	b.failAll(got, "leadership lost")
	if len(got.sent) != 1 {
		t.Fatalf("answers %v, want one BarrierFailed", got.sent)
	}
	if failed, ok := got.sent[0].(*BarrierFailed); !ok || failed.ID != 7 {
		t.Fatalf("answer %#v, want BarrierFailed for 7", got.sent[0])
	}
}
