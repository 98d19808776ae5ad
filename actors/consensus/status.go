package consensus

import (
	"slices"
	"strings"

	"github.com/tolerex/tolerex/messages"
)

// Status is this gateway's view of the Raft group (/api/raft).
type Status struct {
	ID          uint64 `json:"id"`
	State       string `json:"state"` // leader, follower, candidate, pre-candidate
	Lead        uint64 `json:"lead"`
	LeadAddress string `json:"lead_address,omitempty"`
	Term        uint64 `json:"term"`
	Commit      uint64 `json:"commit"`
	Applied     uint64 `json:"applied"`
	// SnapshotIndex is the index of the last snapshot taken or received.
	SnapshotIndex uint64 `json:"snapshot_index"`
	// LeadershipReady is set on a leader that applied the entries of
	// earlier terms.
	LeadershipReady bool `json:"leadership_ready"`
	// Ticks is how many Raft ticks this gateway's consensus actor has
	// taken since it started (one every tick interval while it keeps up).
	Ticks    uint64          `json:"ticks"`
	Gateways []GatewayStatus `json:"gateways"`
	Problem  string          `json:"problem,omitempty"`
}

// GatewayStatus is one gateway of the group.
type GatewayStatus struct {
	ID          uint64 `json:"id"`
	NodeAddress string `json:"node_address"`
	Role        string `json:"role"` // voter or learner
	// Match and Progress are the leader's view of the gateway's log (on
	// the leader only).
	Match    uint64 `json:"match,omitempty"`
	Progress string `json:"progress,omitempty"`
	// Reachable is false while the connection to the gateway is broken;
	// Unreachable then says why its last probe failed, if one did.
	Reachable   bool   `json:"reachable"`
	Unreachable string `json:"unreachable,omitempty"`
}

func (n *node) status() *Status {
	st := &Status{ID: n.cfg.ID}
	if h := n.cfg.Health; h != nil {
		if p := h.problem.Load(); p != nil {
			st.Problem = *p
		}
	}
	if n.rn == nil {
		return st
	}
	rs := n.rn.Status()
	st.State = strings.TrimPrefix(strings.ToLower(rs.RaftState.String()), "state")
	st.Lead, st.LeadAddress, st.Term = rs.Lead, n.leadAddress(), rs.GetTerm()
	st.Commit, st.Applied, st.SnapshotIndex = rs.GetCommit(), n.applied, n.snapshotIndex
	st.LeadershipReady, st.Ticks = n.ready, n.ticks
	role := func(id uint64) string {
		if slices.Contains(n.confState.GetLearners(), id) {
			return "learner"
		}
		return "voter"
	}
	ids := append(slices.Clone(n.confState.GetVoters()), n.confState.GetLearners()...)
	slices.Sort(ids)
	for _, id := range ids {
		g := GatewayStatus{ID: id, Role: role(id), NodeAddress: n.peers.address(id), Reachable: true}
		if id == n.cfg.ID {
			g.NodeAddress = n.cfg.NodeAddress
		} else if pr, ok := n.peers.byID[id]; ok {
			g.Reachable, g.Unreachable = !pr.down, pr.unreachable
		}
		if p, ok := rs.Progress[id]; ok {
			g.Match, g.Progress = p.Match, p.State.String()
		}
		st.Gateways = append(st.Gateways, g)
	}
	return st
}

// raftStatus is this gateway's own view, as other gateways ask for it.
func (n *node) raftStatus() *messages.RaftStatus {
	st := n.status()
	return &messages.RaftStatus{
		Id: st.ID, NodeAddress: n.cfg.NodeAddress, State: st.State, Term: st.Term, Lead: st.Lead,
		Commit: st.Commit, Applied: st.Applied, SnapshotIndex: st.SnapshotIndex, Problem: st.Problem,
		Voters: slices.Clone(n.confState.GetVoters()), Learners: slices.Clone(n.confState.GetLearners()),
	}
}

// tree is this node's supervision tree with its place in the group.
func (n *node) tree() *messages.NodeTree {
	t := &messages.NodeTree{NodeAddress: n.cfg.NodeAddress, Role: "gateway"}
	if n.cfg.Tree != nil {
		t = n.cfg.Tree()
	}
	t.Raft = n.raftStatus()
	return t
}

// GatewayView is one gateway of the group as /api/cluster shows it: its
// own report of where it is, asked over remote, or why it did not answer.
type GatewayView struct {
	ID            uint64 `json:"id"`
	NodeAddress   string `json:"node_address"`
	Role          string `json:"role"`  // voter or learner
	State         string `json:"state"` // its own Raft state
	Leader        bool   `json:"leader"`
	Term          uint64 `json:"term"`
	Commit        uint64 `json:"commit"`
	Applied       uint64 `json:"applied"`
	SnapshotIndex uint64 `json:"snapshot_index"`
	Problem       string `json:"problem,omitempty"`
	Error         string `json:"error,omitempty"` // it did not answer
}
