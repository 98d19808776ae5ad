package consensus

import (
	"errors"
	"fmt"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tolerex/tolerex/messages"
)

// ChangeKind is a change to the gateways' Raft group.
type ChangeKind int

// The changes: a new gateway joins as a learner (it gets the log but does
// not vote), is promoted to voter once it caught up, and a gateway is
// removed.
const (
	AddLearner ChangeKind = iota + 1
	Promote
	Remove
)

// ProposeConfChange asks for a change to the Raft group. Any gateway takes
// it (a follower forwards it to the leader). It is answered with an error:
// nil once the change is proposed (it takes effect when applied; watch
// Status), ErrRetry when it cannot be proposed yet.
type ProposeConfChange struct {
	Kind        ChangeKind
	ID          uint64
	NodeAddress string // AddLearner only
}

// ErrRetry is the answer to a change that cannot be proposed yet: the
// leader is being moved off a gateway that is to be removed, or a learner
// has not caught up. Ask again shortly.
var ErrRetry = errors.New("not yet; retry shortly")

// promoteLag is how far behind the leader's log a learner may be when it
// is promoted.
const promoteLag = 100

func (n *node) proposeConfChange(ctx actor.Context, msg *ProposeConfChange) {
	err := n.confChange(msg)
	if err == nil {
		n.log.Info().Int("kind", int(msg.Kind)).Uint64("gateway", msg.ID).Str("address", msg.NodeAddress).Msg("Raft group change proposed")
	}
	ctx.Respond(err)
}

func (n *node) confChange(msg *ProposeConfChange) error {
	if msg.ID == 0 {
		return errors.New("gateway id 0 is not allowed")
	}
	if n.lead == 0 {
		return fmt.Errorf("no Raft leader known: %w", ErrRetry)
	}
	voter := slices.Contains(n.confState.GetVoters(), msg.ID)
	learner := slices.Contains(n.confState.GetLearners(), msg.ID)
	cc := &raftpb.ConfChangeV2{}
	switch msg.Kind {
	case AddLearner:
		if voter || learner {
			return fmt.Errorf("gateway %d is already in the group", msg.ID)
		}
		if msg.NodeAddress == "" {
			return errors.New("a new gateway needs its node address")
		}
		for _, g := range n.cfg.View.own().Gateways() {
			if g.NodeAddress == msg.NodeAddress {
				return fmt.Errorf("gateway %d already has node address %s", g.ID, msg.NodeAddress)
			}
		}
		info, err := proto.Marshal(&messages.GatewayInfo{Id: msg.ID, NodeAddress: msg.NodeAddress})
		if err != nil {
			return err
		}
		cc.Context = info
		cc.Changes = []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddLearnerNode.Enum(), NodeId: new(msg.ID)}}
	case Promote:
		if voter {
			return fmt.Errorf("gateway %d is already a voter", msg.ID)
		}
		if !learner {
			return fmt.Errorf("gateway %d is not in the group; add it first", msg.ID)
		}
		if n.isLeader {
			if pr, ok := n.rn.Status().Progress[msg.ID]; !ok || pr.Match+promoteLag < n.rn.Status().GetCommit() {
				return fmt.Errorf("gateway %d has not caught up with the log yet: %w", msg.ID, ErrRetry)
			}
		}
		cc.Changes = []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(msg.ID)}}
	case Remove:
		if !voter && !learner {
			return fmt.Errorf("gateway %d is not in the group", msg.ID)
		}
		if voter && len(n.confState.GetVoters()) == 1 {
			return errors.New("cannot remove the last voter")
		}
		if msg.ID == n.lead {
			// The leader steps down first: Raft forwards the transfer to
			// it from a follower.
			to := uint64(0)
			if n.isLeader {
				to = n.bestTransferee()
			} else {
				to = n.cfg.ID
			}
			if to != 0 && to != msg.ID {
				n.rn.TransferLeader(to)
			}
			return fmt.Errorf("moving leadership off gateway %d before removing it: %w", msg.ID, ErrRetry)
		}
		cc.Changes = []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: new(msg.ID)}}
	default:
		return fmt.Errorf("unknown change %d", msg.Kind)
	}
	if err := n.rn.ProposeConfChange(cc); err != nil {
		return fmt.Errorf("propose change: %w", err)
	}
	return nil
}
