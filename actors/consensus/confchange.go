package consensus

import (
	"errors"
	"fmt"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"

	"github.com/tolerex/tolerex/messages"
)

// Changes to the gateways' Raft group (messages.GatewayChange) are made by
// the leader's consensus actor, which any gateway's admin API asks over
// remote: a new gateway joins as a learner (it gets the log but does not
// vote), is promoted to voter once it caught up with the leader's log, and
// a gateway is removed (when it is the leader, leadership moves off it
// first). One change at a time: Raft refuses a second while one is in
// progress (Raft turns a second one into an empty entry without a word,
// so the actor keeps track itself).

// errRetry marks an answer the caller may ask again later for.
var errRetry = errors.New("not yet; retry shortly")

// promoteLag is how far behind the leader's log a learner may be when it
// is promoted.
const promoteLag = 100

func (n *node) gatewayChange(ctx actor.Context, msg *messages.GatewayChange) {
	reply := &messages.GatewayChangeReply{Leader: n.peers.address(n.lead)}
	if n.lead == n.cfg.ID {
		reply.Leader = n.cfg.NodeAddress
	}
	err := n.confChange(msg)
	switch {
	case err == nil:
		n.log.Info().Stringer("kind", msg.GetKind()).Uint64("gateway", msg.GetId()).Str("address", msg.GetNodeAddress()).Msg("Raft group change proposed")
	case errors.Is(err, errRetry):
		reply.Error, reply.Retry = err.Error(), true
	default:
		reply.Error = err.Error()
	}
	ctx.Respond(reply)
}

func (n *node) confChange(msg *messages.GatewayChange) error {
	id := msg.GetId()
	if id == 0 {
		return errors.New("gateway id 0 is not allowed")
	}
	if !n.isLeader || !n.ready {
		return fmt.Errorf("this gateway does not lead the Raft group (ask the leader): %w", errRetry)
	}
	voter := slices.Contains(n.confState.GetVoters(), id)
	learner := slices.Contains(n.confState.GetLearners(), id)
	cc := &raftpb.ConfChangeV2{}
	switch msg.GetKind() {
	case messages.GatewayChangeKind_GATEWAY_ADD_LEARNER:
		if voter || learner {
			return fmt.Errorf("gateway %d is already in the group", id)
		}
		if n.cfg.View.own().GatewayRemoved(id) {
			return fmt.Errorf("gateway %d was removed from the group, and a removed id never joins again: "+
				"start the gateway on an empty data dir with a new --gateway-id and add it under that id", id)
		}
		if msg.GetNodeAddress() == "" {
			return errors.New("a new gateway needs its node address")
		}
		for _, g := range n.cfg.View.own().Gateways() {
			if g.NodeAddress == msg.GetNodeAddress() {
				return fmt.Errorf("gateway %d already has node address %s", g.ID, msg.GetNodeAddress())
			}
		}
		info, err := proto.Marshal(&messages.GatewayInfo{Id: id, NodeAddress: msg.GetNodeAddress()})
		if err != nil {
			return err
		}
		cc.Context = info
		cc.Changes = []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddLearnerNode.Enum(), NodeId: new(id)}}
	case messages.GatewayChangeKind_GATEWAY_PROMOTE:
		if voter {
			return fmt.Errorf("gateway %d is already a voter", id)
		}
		if !learner {
			return fmt.Errorf("gateway %d is not in the group; add it first", id)
		}
		// Caught up means it answered: the leader replicates to it (which
		// takes an acknowledged append) and its log is close to the
		// leader's. A learner that never answered has Match 0, within the
		// lag of a short log, and would make a voter that is down.
		st := n.rn.Status()
		if pr, ok := st.Progress[id]; !ok || pr.State != tracker.StateReplicate || !pr.RecentActive || pr.Match+promoteLag < st.GetCommit() {
			return fmt.Errorf("gateway %d has not caught up with the log yet: %w", id, errRetry)
		}
		cc.Changes = []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(id)}}
	case messages.GatewayChangeKind_GATEWAY_REMOVE:
		if !voter && !learner {
			return fmt.Errorf("gateway %d is not in the group", id)
		}
		if voter && len(n.confState.GetVoters()) == 1 {
			return errors.New("cannot remove the last voter")
		}
		if id == n.cfg.ID {
			// The leader steps down first.
			if to := n.bestTransferee(); to != 0 {
				n.log.Info().Uint64("to", to).Msg("moving leadership off this gateway before removing it")
				n.rn.TransferLeader(to)
			}
			return fmt.Errorf("moving leadership off gateway %d before removing it: %w", id, errRetry)
		}
		cc.Changes = []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: new(id)}}
	default:
		return fmt.Errorf("unknown change %v", msg.GetKind())
	}
	if n.rn.BasicStatus().LeadTransferee != 0 {
		return fmt.Errorf("leadership is being transferred: %w", errRetry)
	}
	if n.confPending {
		return fmt.Errorf("another change of the group is in progress: %w", errRetry)
	}
	if err := n.rn.ProposeConfChange(cc); err != nil {
		return fmt.Errorf("propose change: %w: %w", err, errRetry)
	}
	n.confPending = true
	return nil
}
