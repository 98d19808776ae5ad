package leader

import (
	"github.com/tolerex/tolerex/actors/consensus"
	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/messages"
)

// stateReader reads the replicated state machine, which the gateway's
// consensus actor applies committed entries to, through its StateView:
// every call takes the view's read lock for just that call. What it
// returns stays valid afterwards (replica sets are never changed once
// interned).
type stateReader struct{ view *consensus.StateView }

// Lookup returns the indexed version of id and the slots holding it.
func (r stateReader) Lookup(id int64) (version uint64, replicas []uint32, ok bool) {
	r.view.Read(func(s *meta.State) { version, replicas, ok = s.Lookup(id) })
	return version, replicas, ok
}

// LookupSized is Lookup with the version's payload size, read under one
// lock, so the size is that version's.
func (r stateReader) LookupSized(id int64) (version uint64, replicas []uint32, size uint32, ok bool) {
	r.view.Read(func(s *meta.State) {
		if version, replicas, ok = s.Lookup(id); ok {
			size, _ = s.Size(id)
		}
	})
	return version, replicas, size, ok
}

// Size returns the payload size of the indexed version of id (0 if id
// is not indexed).
func (r stateReader) Size(id int64) (size uint32) {
	r.view.Read(func(s *meta.State) { size, _ = s.Size(id) })
	return size
}

// Epoch returns the current leader epoch.
func (r stateReader) Epoch() (epoch uint64) {
	r.view.Read(func(s *meta.State) { epoch = s.Epoch() })
	return epoch
}

// Len returns the number of indexed messages.
func (r stateReader) Len() (n int) {
	r.view.Read(func(s *meta.State) { n = s.Len() })
	return n
}

// RequestOutcome is meta.State.RequestOutcome.
func (r stateReader) RequestOutcome(id *messages.RequestId) (code messages.ReplyCode, applied, tooLate bool) {
	r.view.Read(func(s *meta.State) { code, applied, tooLate = s.RequestOutcome(id) })
	return code, applied, tooLate
}

// RequestCount returns how many requests the state machine applied in
// all.
func (r stateReader) RequestCount() (n uint64) {
	r.view.Read(func(s *meta.State) { n = s.RequestCount() })
	return n
}

// Members returns the registered members by slot.
func (r stateReader) Members() (members []meta.Member) {
	r.view.Read(func(s *meta.State) { members = s.Members() })
	return members
}

// Member returns the member with the given slot.
func (r stateReader) Member(slot uint32) (m meta.Member, ok bool) {
	r.view.Read(func(s *meta.State) { m, ok = s.Member(slot) })
	return m, ok
}

// SlotOf returns the slot of a member id.
func (r stateReader) SlotOf(memberID string) (slot uint32, ok bool) {
	r.view.Read(func(s *meta.State) { slot, ok = s.SlotOf(memberID) })
	return slot, ok
}

// Counts returns how many indexed messages each member slot holds.
func (r stateReader) Counts() (counts map[uint32]int64) {
	r.view.Read(func(s *meta.State) { counts = s.Counts() })
	return counts
}

// Check reports whether the state machine would accept e now.
func (r stateReader) Check(e *messages.LogEntry) (err error) {
	r.view.Read(func(s *meta.State) { err = s.Check(e) })
	return err
}

// Gateways returns the gateways of the Raft group.
func (r stateReader) Gateways() (gateways []meta.Gateway) {
	r.view.Read(func(s *meta.State) { gateways = s.Gateways() })
	return gateways
}
