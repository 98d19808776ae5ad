package consensus

import (
	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/messages"
)

// The consensus actor's local API: messages other actors of the same
// gateway send it, and the events it sends its subscribers. None of them
// crosses the network.

// Subscribe makes the sender a subscriber: it gets LeaderChanged (at once,
// with the current leader), LeadershipReady, Applied, BarrierDone,
// BarrierFailed and ProposalsDropped.
type Subscribe struct{}

// Propose asks for entries to be appended to the replicated log. Only the
// Raft leader takes proposals; entries it cannot take come back in
// ProposalsDropped. The outcome of the others arrives in Applied, if they
// commit (an entry proposed by a leader deposed before it commits never
// does).
type Propose struct {
	Entries []*messages.LogEntry
}

// ProposalsDropped returns entries Raft refused: nothing was proposed.
// Reason is DropNotLeader or DropTransfer when another gateway will lead
// (the requests belong there); anything else is a refusal for good, said
// in the words the client gets (too much uncommitted, or the Raft log's
// disk is nearly full: disk.go).
type ProposalsDropped struct {
	Entries []*messages.LogEntry
	Reason  string
}

// The reasons of ProposalsDropped that mean "send them to the next
// leader".
const (
	DropNotLeader = "not the Raft leader"
	DropTransfer  = "leadership is being transferred"
)

// LeaderChanged reports who leads the Raft group now. Lead is 0 while no
// leader is known.
type LeaderChanged struct {
	Lead        uint64
	LeadAddress string // node address of the leader, "" if unknown
	Term        uint64
	// Local is set when this gateway leads.
	Local bool
}

// LeadershipReady tells that this gateway, leader in Term, has applied
// every entry of earlier terms: its state machine is current and it may
// serve.
type LeadershipReady struct {
	Term uint64
}

// Applied reports committed entries just applied to the state machine, in
// log order.
type Applied struct {
	Entries []AppliedEntry
}

// AppliedEntry is one applied log entry and what it did.
type AppliedEntry struct {
	Index  uint64
	Entry  *messages.LogEntry
	Effect meta.Effect
	// Err is set when the state machine rejected the entry (it changed
	// nothing, on every gateway).
	Err error
}

// ReadBarrier asks the leader to confirm it still leads (Raft ReadIndex)
// and to answer BarrierDone with the same ID once the state machine has
// applied everything committed when the barrier was asked for: a read of
// the state after that is linearizable. A barrier that cannot be confirmed
// (leadership lost) is answered BarrierFailed.
type ReadBarrier struct {
	ID uint64
}

// BarrierDone answers a ReadBarrier.
type BarrierDone struct {
	ID uint64
}

// BarrierFailed answers a ReadBarrier that cannot be confirmed.
type BarrierFailed struct {
	ID     uint64
	Reason string
}

// TransferLeadership asks the leader to hand leadership to the gateway
// with Raft id To (0: the most up-to-date other voter). It is answered
// with an error (nil when the transfer started).
type TransferLeadership struct {
	To uint64
}

// StepAside tells consensus that this gateway can no longer coordinate
// (its leader actor was stopped for good): from now until the gateway
// restarts it hands its leadership to another voter whenever it leads, at
// once and again each tick while no transfer is under way (one that found
// no taker is retried). It goes on voting and replicating the log, so the
// group keeps its majority. Reason is logged.
type StepAside struct {
	Reason string
}

// Unavailable tells a subscriber that this gateway's consensus does not
// run, and why: its Raft log cannot be read, or the actor kept crashing
// and was stopped (nothing is applied or led here until the gateway is
// repaired and restarted), or a log write found the disk full and the
// actor waits for space (then Available follows once it runs again). It
// may come again with a newer reason.
type Unavailable struct {
	Reason string
}

// Available tells a subscriber that consensus runs again after an
// Unavailable: the disk that stopped it has room, and the Raft log is
// open. Who leads follows in LeaderChanged.
type Available struct{}

// StatusRequest asks for the consensus Status; it is answered with one.
type StatusRequest struct{}

// InjectPanic makes the consensus actor panic (its supervisor restarts
// it); gateways started with --fault-injection send it on POST
// /debug/fault/consensus-panic.
type InjectPanic struct{}
