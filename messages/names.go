package messages

// Actor names are part of the wire contract: a node addresses an actor on
// another node by its node address and one of these names
// (actor.NewPID(address, name)).
const (
	// GatewayActor owns a gateway's HaToKuSe listener; sessions are its
	// children.
	GatewayActor = "gateway"
	// ConsensusActor runs a gateway's part of the gateways' Raft group.
	ConsensusActor = "consensus"
	// LeaderActor coordinates writes and reads on a gateway.
	LeaderActor = "leader"
	// SelectorActor is the leader's replica selector.
	SelectorActor = "leader/selector"
	// MembershipActor takes member heartbeats on a gateway; it is the
	// leader actor's sibling.
	MembershipActor = "membership"
	// LegacyMembershipActor is the name the membership actor had while it
	// was the leader actor's child. Gateways still take heartbeats sent
	// to it, so members of that version keep their place during a rolling
	// upgrade; members send to MembershipActor, and to this name on a
	// gateway that sends that back as a dead letter (membership.Homing).
	LegacyMembershipActor = "leader/members"
	// MemberActor is the root supervisor on a member node.
	MemberActor = "member"
	// StorageActor owns a member node's store.
	StorageActor = "member/storage"
)
