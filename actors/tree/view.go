package tree

import (
	"time"

	"github.com/tolerex/tolerex/messages"
)

// NodeView is the JSON form of one node's supervision tree (/api/tree).
type NodeView struct {
	NodeAddress string      `json:"node_address"`
	Role        string      `json:"role"`
	MemberID    string      `json:"member_id,omitempty"`
	Reachable   bool        `json:"reachable"`
	Error       string      `json:"error,omitempty"`
	Raft        *RaftView   `json:"raft,omitempty"` // gateways only
	Actors      []ActorView `json:"actors"`
}

// RaftView is a gateway's place in the Raft group, as it reports it.
type RaftView struct {
	ID      uint64 `json:"id"`
	State   string `json:"state"`
	Leader  bool   `json:"leader"`
	Term    uint64 `json:"term"`
	Commit  uint64 `json:"commit"`
	Applied uint64 `json:"applied"`
	Problem string `json:"problem,omitempty"`
}

// ActorView is the JSON form of one actor and its children.
type ActorView struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Restarts uint32 `json:"restarts"`
	Mailbox  int64  `json:"mailbox"`
	// Stopped is set for an actor its supervisor stopped for good after
	// a crash.
	Stopped     bool         `json:"stopped,omitempty"`
	LastFailure *FailureView `json:"last_failure,omitempty"`
	Children    []ActorView  `json:"children,omitempty"`
}

// FailureView is the JSON form of an actor's last crash.
type FailureView struct {
	Reason      string    `json:"reason"`
	MessageType string    `json:"message_type"`
	At          time.Time `json:"at"`
	// Count is how often the actor crashed since its node started.
	Count uint32 `json:"count"`
}

// ClusterView is the JSON form of every node's tree.
type ClusterView struct {
	Nodes []NodeView `json:"nodes"`
}

// ViewOf converts a node tree received from a node.
func ViewOf(t *messages.NodeTree) NodeView {
	v := NodeView{
		NodeAddress: t.GetNodeAddress(),
		Role:        t.GetRole(),
		MemberID:    t.GetMemberId(),
		Reachable:   true,
		Actors:      actorViews(t.GetActors()),
	}
	if r := t.GetRaft(); r != nil {
		v.Raft = &RaftView{ID: r.GetId(), State: r.GetState(), Leader: r.GetState() == "leader", Term: r.GetTerm(),
			Commit: r.GetCommit(), Applied: r.GetApplied(), Problem: r.GetProblem()}
	}
	return v
}

// Local returns this node's tree.
func (r *Registry) Local(nodeAddress, role, memberID string) *messages.NodeTree {
	return &messages.NodeTree{NodeAddress: nodeAddress, Role: role, MemberId: memberID, Actors: r.Snapshot()}
}

func actorViews(infos []*messages.ActorInfo) []ActorView {
	views := make([]ActorView, 0, len(infos))
	for _, a := range infos {
		v := ActorView{
			ID:       a.GetId(),
			Kind:     a.GetKind(),
			Restarts: a.GetRestarts(),
			Mailbox:  a.GetMailbox(),
			Stopped:  a.GetStopped(),
			Children: actorViews(a.GetChildren()),
		}
		if f := a.GetLastFailure(); f != nil {
			v.LastFailure = &FailureView{
				Reason:      f.GetReason(),
				MessageType: f.GetMessageType(),
				At:          time.UnixMilli(f.GetAtUnixMs()).UTC(),
				Count:       f.GetCount(),
			}
		}
		views = append(views, v)
	}
	return views
}
