package membership

import (
	"errors"
	"time"

	"github.com/tolerex/tolerex/actors/meta"
)

// Config times liveness.
type Config struct {
	// HeartbeatTimeout is how long a member may stay silent before it is
	// down.
	HeartbeatTimeout time.Duration
	// Quarantine is how long heartbeats from a member whose connection
	// just broke are ignored: one sent just before a crash must not
	// revive it.
	Quarantine time.Duration
}

// withDefaults fills in what is unset: members down after 2 s of
// silence, heartbeats ignored for 1 s after a broken connection.
func (c Config) withDefaults() Config {
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = 2 * time.Second
	}
	if c.Quarantine <= 0 {
		c.Quarantine = time.Second
	}
	return c
}

// registrationRetry is how long a registration may stay unanswered before
// the next heartbeat asks again (the log append may have failed).
const registrationRetry = 2 * time.Second

// Liveness is the active leader's view of which members are alive. A
// member is alive while it heartbeats; it is down at once when its
// connection breaks, or after Config.HeartbeatTimeout of silence.
// Registration itself goes through the leader's log: Liveness only asks
// for it. It is pure: every input carries the time (the caller's stall
// clock, so a pause of the gateway does not count against the members),
// and every output says what to tell the leader or the member.
type Liveness struct {
	cfg     Config
	members map[string]*memberState // by member id
	byAddr  map[string]string       // node address -> member id
}

type memberState struct {
	id, nodeAddress, adminAddress string
	slot                          uint32
	registered                    bool
	registering                   time.Time // when registration was last asked for
	alive, ready                  bool
	lastReady                     bool      // storage readiness in the last heartbeat
	lastHeard                     time.Time // wall time, for display
	heardAt                       time.Time // clock time of the last heartbeat
	quarantinedUntil              time.Time // clock time
	messages, bytes               uint64
	writesRefused                 string
	diskFree                      uint64
}

// NewLiveness returns a Liveness that knows no member.
func NewLiveness(cfg Config) *Liveness {
	return &Liveness{cfg: cfg, members: make(map[string]*memberState), byAddr: make(map[string]string)}
}

// Heartbeat is what one member heartbeat says.
type Heartbeat struct {
	MemberID, NodeAddress, AdminAddress string
	StorageReady                        bool
	Messages, Bytes                     uint64
	// WritesRefused says why the member takes no writes ("" if it does).
	WritesRefused string
	DiskFree      uint64
	// Wall is when it arrived, by the wall clock (shown to operators).
	Wall time.Time
}

// HeartbeatOutcome is what to do about a heartbeat.
type HeartbeatOutcome struct {
	// Register, if set, asks the leader to record the member in the log.
	Register *RegisterMember
	// Ack says to acknowledge the heartbeat with the member's Slot.
	Ack  bool
	Slot uint32
	// Update, if set, is the member's liveness and load for the leader.
	Update *MemberUpdate
	// CameUp says the member is up now and was not before.
	CameUp bool
}

// ErrIncompleteHeartbeat is a heartbeat without a member id or node
// address.
var ErrIncompleteHeartbeat = errors.New("heartbeat without member id or node address")

// Heartbeat takes a member's heartbeat at clock time now.
func (l *Liveness) Heartbeat(hb Heartbeat, now time.Time) (HeartbeatOutcome, error) {
	if hb.MemberID == "" || hb.NodeAddress == "" {
		return HeartbeatOutcome{}, ErrIncompleteHeartbeat
	}
	st := l.members[hb.MemberID]
	if st == nil {
		st = &memberState{id: hb.MemberID}
		l.members[st.id] = st
	}
	if now.Before(st.quarantinedUntil) {
		return HeartbeatOutcome{}, nil
	}
	if st.nodeAddress != hb.NodeAddress || st.adminAddress != hb.AdminAddress {
		if st.nodeAddress != "" {
			delete(l.byAddr, st.nodeAddress)
		}
		st.nodeAddress, st.adminAddress = hb.NodeAddress, hb.AdminAddress
		l.byAddr[st.nodeAddress] = st.id
		st.registered = false // the new addresses must reach the log first
	}
	st.lastHeard, st.heardAt, st.lastReady = hb.Wall, now, hb.StorageReady
	st.messages, st.bytes = hb.Messages, hb.Bytes
	st.writesRefused, st.diskFree = hb.WritesRefused, hb.DiskFree
	if !st.registered {
		var out HeartbeatOutcome
		if now.Sub(st.registering) > registrationRetry {
			st.registering = now
			out.Register = &RegisterMember{MemberID: st.id, NodeAddress: st.nodeAddress, AdminAddress: st.adminAddress}
		}
		return out, nil
	}
	wasUp := st.alive && st.ready
	st.alive, st.ready = true, hb.StorageReady
	return HeartbeatOutcome{Ack: true, Slot: st.slot, Update: st.update(), CameUp: !wasUp && st.ready}, nil
}

// Registered records that the log gave a member its slot, at clock time
// now. The registration answers the heartbeat that asked for it: the
// member is up as of that heartbeat if that one is recent, so it is
// usable before it learns it is registered (and reports itself ready).
// Nil if the member is not known here.
func (l *Liveness) Registered(memberID string, slot uint32, now time.Time) *Registration {
	st := l.members[memberID]
	if st == nil {
		return nil
	}
	st.registering, st.registered, st.slot = time.Time{}, true, slot
	r := &Registration{NodeAddress: st.nodeAddress}
	if now.Sub(st.heardAt) <= l.cfg.HeartbeatTimeout {
		st.alive, st.ready = true, st.lastReady
		r.Update = st.update()
	}
	return r
}

// Registration is what to do once a member is registered: acknowledge it
// with its slot, and tell the leader Update if set (the member is up).
type Registration struct {
	NodeAddress string
	Update      *MemberUpdate
}

// Down is a member just found down.
type Down struct {
	MemberID, NodeAddress string
	Slot                  uint32
	// Update is its state for the leader; nil if it is not registered.
	Update *MemberUpdate
	// SilentFor is how long it had not heartbeated (0 when its
	// connection broke).
	SilentFor time.Duration
}

// ConnectionLost takes the news, at clock time now, that the connection
// to a node address broke: the member there is down, and its heartbeats
// are ignored for Config.Quarantine. Nil if no member that was alive is
// at that address.
func (l *Liveness) ConnectionLost(address string, now time.Time) *Down {
	st := l.members[l.byAddr[address]]
	if st == nil || !st.alive {
		return nil
	}
	st.alive = false
	st.quarantinedUntil = now.Add(l.cfg.Quarantine)
	return &Down{MemberID: st.id, NodeAddress: st.nodeAddress, Slot: st.slot, Update: st.update()}
}

// Expire marks down, at clock time now, every member alive but silent
// longer than Config.HeartbeatTimeout.
func (l *Liveness) Expire(now time.Time) []Down {
	var out []Down
	for _, st := range l.members {
		if st.alive && now.Sub(st.heardAt) > l.cfg.HeartbeatTimeout {
			st.alive = false
			out = append(out, Down{MemberID: st.id, NodeAddress: st.nodeAddress, Slot: st.slot, Update: st.update(), SilentFor: now.Sub(st.heardAt)})
		}
	}
	return out
}

// Presume starts a term: the registered members count as alive as of
// clock time now (wall: the same instant by the wall clock), until they
// miss their heartbeats. Their heartbeats are on their way to the new
// leader; without this, it would refuse every write until they arrived.
func (l *Liveness) Presume(members []meta.Member, now, wall time.Time) {
	l.Forget()
	for _, mem := range members {
		st := &memberState{
			id: mem.ID, nodeAddress: mem.NodeAddress, adminAddress: mem.AdminAddress,
			slot: mem.Slot, registered: true, alive: true, ready: true, lastReady: true,
			lastHeard: wall, heardAt: now,
		}
		l.members[st.id] = st
		l.byAddr[st.nodeAddress] = st.id
	}
}

// Forget drops everything known of the members: liveness is the active
// leader's to keep.
func (l *Liveness) Forget() {
	clear(l.members)
	clear(l.byAddr)
}

// update is the member's state for the leader; nil until it is
// registered (the leader knows it by its slot).
func (st *memberState) update() *MemberUpdate {
	if !st.registered {
		return nil
	}
	return &MemberUpdate{
		Slot: st.slot, Alive: st.alive, Ready: st.ready,
		Messages: st.messages, Bytes: st.bytes, LastHeard: st.lastHeard,
		WritesRefused: st.writesRefused, DiskFree: st.diskFree,
	}
}
