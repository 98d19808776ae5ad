package consensus

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/tolerex/tolerex/messages"
)

// A gateway removed from the group may never learn it: the leader stops
// replicating to a gateway once it applied its removal, so the entry that
// removed it may reach it uncommitted, or not at all. Left alone it would
// campaign for ever (PreVote keeps it from disrupting the group, but it
// logs every attempt), its clients would wait for a leader it never finds,
// and raft grants votes without asking whether the candidate is still a
// member: a remaining voter without a leader would vote for it if its log
// is as long, and it would then lead the voters that answer it, counting
// majorities by the configuration the group replaced. So every gateway
// drops the Raft messages of a gateway whose removal it applied and tells
// the sender so; the sender, told so or on applying its own removal, stops
// Raft and serves nothing, and says why. A removed id never joins again
// (confChange refuses it), so the notice is never wrong.

// removedNoticeInterval bounds the notices sent to one removed gateway.
const removedNoticeInterval = time.Second

// fromRemoved reports whether from is a gateway this one applied the
// removal of; if so it tells the sender (at most once a
// removedNoticeInterval) and logs the first time.
func (n *node) fromRemoved(ctx actor.Context, from uint64) bool {
	if !n.cfg.View.own().GatewayRemoved(from) {
		return false
	}
	if n.removedNoticed == nil {
		n.removedNoticed = make(map[uint64]time.Time)
	}
	last, told := n.removedNoticed[from]
	if !told {
		n.log.Warn().Uint64("gateway", from).Msg("Raft messages from a gateway removed from the group: dropped, and it is told so")
	}
	if now := time.Now(); now.Sub(last) >= removedNoticeInterval && ctx.Sender() != nil {
		n.removedNoticed[from] = now
		ctx.Send(ctx.Sender(), &messages.GatewayRemovedNotice{Id: from, From: n.cfg.ID})
	}
	return true
}

// removedNotice handles another gateway's word that this one was removed.
func (n *node) removedNotice(msg *messages.GatewayRemovedNotice) {
	if msg.GetId() != n.cfg.ID || n.removedHow != "" {
		return
	}
	n.removedHow = fmt.Sprintf("gateway %d applied the removal and drops this gateway's Raft messages", msg.GetFrom())
}

// leaveGroup stops Raft on a gateway removed from the group, as a
// consensus that stopped for good does (stop): it takes no part and serves
// nothing from now on, and says why (readiness, the leader actor's answers
// to clients, the log).
func (n *node) leaveGroup(ctx actor.Context) {
	reason := "removed from the Raft group (" + n.removedHow + "): this gateway takes no part and serves nothing. " +
		"Stop it and keep its data dir out of any group; to serve again, start it on an empty data dir with a new --gateway-id " +
		"and --initial-cluster-state existing, and add it (tolerex cluster add-gateway)"
	n.log.Error().Str("reason", reason).Msg("this gateway was removed from the Raft group; consensus stopped")
	if h := n.cfg.Health; h != nil {
		h.setProblem(reason)
	}
	n.stop(ctx, "removed from the Raft group")
}
