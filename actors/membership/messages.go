package membership

import (
	"time"

	"github.com/tolerex/tolerex/actors/meta"
)

// Messages between the membership actor and its sibling, the leader actor
// of the same gateway.
type (
	// RegisterMember asks the leader to record a member in the log.
	RegisterMember struct {
		MemberID, NodeAddress, AdminAddress string
	}
	// MemberRegistered tells the membership actor a member's slot.
	MemberRegistered struct {
		MemberID string
		Slot     uint32
	}
	// MemberUpdate tells the leader a registered member's liveness and
	// load.
	MemberUpdate struct {
		Slot            uint32
		Alive, Ready    bool
		Messages, Bytes uint64
		LastHeard       time.Time
		// WritesRefused says why the member takes no writes (its disk is
		// nearly full); it still serves reads.
		WritesRefused string
		DiskFree      uint64
	}
	// Leadership tells the membership actor whether its gateway's leader
	// is active, and which gateway leads. Only the active leader keeps
	// track of members; the others send members there.
	Leadership struct {
		LeaderAddress string
		Active        bool
	}
	// Resync asks the leader, from a membership actor restarted after a
	// crash, to tell it again where leadership stands: PresumeAlive
	// followed by Leadership if it leads, Leadership alone otherwise.
	Resync struct{}
	// PresumeAlive starts a term: the registered members count as alive,
	// as of now, until they miss their heartbeats.
	PresumeAlive struct{ Members []meta.Member }
)

// InjectPanic makes the membership actor panic; gateways started with
// --fault-injection send it on POST /debug/fault/membership-panic.
type InjectPanic struct{}
