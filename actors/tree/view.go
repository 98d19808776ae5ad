package tree

import "github.com/tolerex/tolerex/messages"

// NodeView is the JSON form of one node's supervision tree (/api/tree).
type NodeView struct {
	NodeAddress string      `json:"node_address"`
	Role        string      `json:"role"`
	MemberID    string      `json:"member_id,omitempty"`
	Reachable   bool        `json:"reachable"`
	Error       string      `json:"error,omitempty"`
	Actors      []ActorView `json:"actors"`
}

// ActorView is the JSON form of one actor and its children.
type ActorView struct {
	ID       string      `json:"id"`
	Kind     string      `json:"kind"`
	Restarts uint32      `json:"restarts"`
	Mailbox  int64       `json:"mailbox"`
	Children []ActorView `json:"children,omitempty"`
}

// ClusterView is the JSON form of every node's tree.
type ClusterView struct {
	Nodes []NodeView `json:"nodes"`
}

// ViewOf converts a node tree received from a node.
func ViewOf(t *messages.NodeTree) NodeView {
	return NodeView{
		NodeAddress: t.GetNodeAddress(),
		Role:        t.GetRole(),
		MemberID:    t.GetMemberId(),
		Reachable:   true,
		Actors:      actorViews(t.GetActors()),
	}
}

// Local returns this node's tree.
func (r *Registry) Local(nodeAddress, role, memberID string) *messages.NodeTree {
	return &messages.NodeTree{NodeAddress: nodeAddress, Role: role, MemberId: memberID, Actors: r.Snapshot()}
}

func actorViews(infos []*messages.ActorInfo) []ActorView {
	views := make([]ActorView, 0, len(infos))
	for _, a := range infos {
		views = append(views, ActorView{
			ID:       a.GetId(),
			Kind:     a.GetKind(),
			Restarts: a.GetRestarts(),
			Mailbox:  a.GetMailbox(),
			Children: actorViews(a.GetChildren()),
		})
	}
	return views
}
