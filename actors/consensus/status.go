package consensus

import (
	"slices"
	"strings"
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
	LeadershipReady bool            `json:"leadership_ready"`
	Gateways        []GatewayStatus `json:"gateways"`
	Problem         string          `json:"problem,omitempty"`
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
	// Reachable is false while the connection to the gateway is broken.
	Reachable bool `json:"reachable"`
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
	st.LeadershipReady = n.ready
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
			g.Reachable = !pr.down
		}
		if p, ok := rs.Progress[id]; ok {
			g.Match, g.Progress = p.Match, p.State.String()
		}
		st.Gateways = append(st.Gateways, g)
	}
	return st
}
