package consensus

import (
	"errors"
	"fmt"
	"os"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/messages"
	"github.com/tolerex/tolerex/storage/raftlog"
)

// Moving a state machine in and out of Raft logs, for the two times a
// gateway's log is rebuilt by hand: upgrading a single gateway whose
// metadata lives in the version-1 metadata log, and recovering a group
// that lost its quorum for good from one survivor's data.

// LoadState reads the state machine out of the Raft log in dir: the stored
// snapshot with every entry after it applied, those the log knows to be
// committed and those it holds beyond: the leader that is gone may have
// committed, and acknowledged, some of them. (One it did not commit only
// ever got its client an unknown outcome, never a definite error, so
// keeping it breaks no promise.) It returns the state, the index it is at
// and the last term the log knows.
func LoadState(dir string) (*meta.State, uint64, uint64, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, 0, 0, fmt.Errorf("raft log %s: %w", dir, err)
	}
	lg, err := raftlog.Open(dir, raftlog.Options{OnWritten: func([]raftlog.Written) {}})
	if err != nil {
		return nil, 0, 0, err
	}
	defer func() { _ = lg.Close() }()
	st := lg.Storage()
	hs, _, err := st.InitialState()
	if err != nil {
		return nil, 0, 0, err
	}
	snap, err := st.Snapshot()
	if err != nil {
		return nil, 0, 0, err
	}
	state, index := meta.New(), uint64(0)
	if !raft.IsEmptySnap(snap) {
		index = snap.GetMetadata().GetIndex()
		data, err := lg.SnapshotData(index)
		if err != nil {
			return nil, 0, 0, err
		}
		if state, err = decodeState(data); err != nil {
			return nil, 0, 0, err
		}
	}
	last, err := st.LastIndex()
	if err != nil {
		return nil, 0, 0, err
	}
	if last > index {
		entries, err := st.Entries(index+1, last+1, ^uint64(0))
		if err != nil {
			return nil, 0, 0, fmt.Errorf("read entries %d..%d: %w", index+1, last, err)
		}
		for _, e := range entries {
			applyForTransplant(state, e)
		}
		index = last
	}
	term := hs.GetTerm()
	if lastTerm, err := st.Term(last); err == nil {
		term = max(term, lastTerm)
	}
	return state, index, term, nil
}

// applyForTransplant applies one committed entry the way the consensus
// actor does: client entries through Apply (rejections skipped),
// configuration changes to the gateway registry.
func applyForTransplant(state *meta.State, e *raftpb.Entry) {
	switch e.GetType() {
	case raftpb.EntryNormal:
		var batch messages.LogBatch
		if len(e.GetData()) > 0 && proto.Unmarshal(e.GetData(), &batch) == nil {
			for _, le := range batch.GetEntries() {
				_, _ = state.Apply(le)
			}
		}
	case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
		var v2 *raftpb.ConfChangeV2
		if e.GetType() == raftpb.EntryConfChange {
			var v1 raftpb.ConfChange
			if proto.Unmarshal(e.GetData(), &v1) != nil {
				return
			}
			v2 = v1.AsV2()
		} else {
			v2 = &raftpb.ConfChangeV2{}
			if proto.Unmarshal(e.GetData(), v2) != nil {
				return
			}
		}
		var info messages.GatewayInfo
		hasInfo := proto.Unmarshal(v2.GetContext(), &info) == nil && info.GetId() != 0
		for _, c := range v2.GetChanges() {
			switch c.GetType() {
			case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
				if hasInfo && info.GetId() == c.GetNodeId() {
					state.SetGateway(meta.Gateway{ID: info.GetId(), NodeAddress: info.GetNodeAddress()})
				}
			case raftpb.ConfChangeRemoveNode:
				state.RemoveGateway(c.GetNodeId())
			}
		}
	}
}

// WriteState creates a Raft log in dir (which must not hold one) whose
// group is this one gateway alone, and whose state machine is state, as a
// snapshot at index in term. The gateway starts from it as the only voter
// of a group of one; others are added to it afterwards.
func WriteState(dir string, id uint64, nodeAddress string, state *meta.State, index, term uint64, sync bool) error {
	if id == 0 || nodeAddress == "" || index == 0 || term == 0 {
		return errors.New("write raft state: needs a gateway id, its node address, an index and a term")
	}
	for _, g := range state.Gateways() {
		state.RemoveGateway(g.ID)
	}
	state.SetGateway(meta.Gateway{ID: id, NodeAddress: nodeAddress})
	data, err := proto.Marshal(state.Snapshot())
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	done := make(chan error, 1)
	lg, err := raftlog.Open(dir, raftlog.Options{
		Sync: sync,
		OnWritten: func(ws []raftlog.Written) {
			for _, w := range ws {
				done <- w.Err
			}
		},
	})
	if err != nil {
		return err
	}
	if !lg.Empty() {
		_ = lg.Close()
		return fmt.Errorf("write raft state: %s already holds a Raft log", dir)
	}
	lg.Write(raftlog.Write{
		Snapshot: &raftpb.Snapshot{Data: data, Metadata: &raftpb.SnapshotMetadata{
			Index: new(index), Term: new(term), ConfState: &raftpb.ConfState{Voters: []uint64{id}},
		}},
		HardState: &raftpb.HardState{Term: new(term), Commit: new(index), Vote: new(uint64(0))},
	})
	werr := <-done
	if err := lg.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		return fmt.Errorf("write raft state to %s: %w", dir, werr)
	}
	return nil
}
