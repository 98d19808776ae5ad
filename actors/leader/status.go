package leader

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/tolerex/tolerex/actors/consensus"
	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/cluster"
	"github.com/tolerex/tolerex/messages"
)

// Status is what the leader publishes for health checks without a round
// trip through its mailbox.
type Status struct {
	// Active is true while this gateway's leader serves requests (it is
	// the Raft leader and its term's epoch is applied).
	Active atomic.Bool
	// Leading is true while this gateway is the Raft leader; LeaderKnown
	// while some gateway is known to be.
	Leading     atomic.Bool
	LeaderKnown atomic.Bool
	// Messages is the number of indexed messages.
	Messages atomic.Int64
	// problem says why the leader cannot serve, if it is not merely
	// starting: its metadata log is unreadable, or it crashed too often
	// and was stopped.
	problem atomic.Pointer[string]
	// LiveMembers is the number of members that take writes: registered,
	// heard from recently, their storage open.
	LiveMembers atomic.Int64
}

// SetProblem records why the leader cannot serve; "" clears it.
func (s *Status) SetProblem(problem string) {
	if problem == "" {
		s.problem.Store(nil)
		return
	}
	s.problem.Store(&problem)
}

// NotReady says why the gateway cannot serve writes (its /readyz reason),
// or nil when it can. A gateway that leads is ready when its leader is
// active and at least tolerance members are live, so a SET can get its
// tolerance copies; any other gateway when it knows which gateway leads
// (it forwards requests there; the members are the leader's to count).
func (s *Status) NotReady(tolerance int) error {
	if p := s.problem.Load(); p != nil {
		return errors.New(*p)
	}
	if !s.Leading.Load() {
		if !s.LeaderKnown.Load() {
			return errors.New("no leader known")
		}
		return nil
	}
	if !s.Active.Load() {
		return errors.New("leader not active yet")
	}
	if live := s.LiveMembers.Load(); live < int64(tolerance) {
		return fmt.Errorf("%d live members, tolerance %d: every SET fails until %d members are live", live, tolerance, tolerance)
	}
	return nil
}

func (l *leader) publishStatus() {
	if st := l.cfg.Status; st != nil {
		st.Active.Store(l.active)
		st.Leading.Store(l.lead.Local)
		st.LeaderKnown.Store(l.lead.Lead != 0)
		if l.state.view != nil {
			st.Messages.Store(int64(l.state.Len()))
		}
		st.LiveMembers.Store(int64(l.liveCount()))
	}
}

// ClusterStatus is the leader's view of the cluster, served as
// /api/cluster.
type ClusterStatus struct {
	// Leader is the node address of the gateway that leads ("" while none
	// is known); Active is set on that gateway once it serves.
	Leader    string         `json:"leader"`
	Active    bool           `json:"active"`
	Tolerance int            `json:"tolerance"`
	Balancer  string         `json:"balancer"`
	Epoch     uint64         `json:"epoch"`
	Messages  int            `json:"messages"`
	LiveCount int            `json:"live_members"`
	Members   []MemberStatus `json:"members"`
	// Raft is the gateway's view of the Raft group, and Gateways each
	// gateway's own report of its place in it (filled in by the admin
	// API, which asks them).
	Raft     *consensus.Status       `json:"raft,omitempty"`
	Gateways []consensus.GatewayView `json:"gateways,omitempty"`
	LivenessSource
}

// LivenessSource says whose view of the members' liveness and load a
// status shows: the active leader's, the only gateway that tracks them
// (the admin API of any other gateway asks it; see WithLiveness).
type LivenessSource struct {
	// LivenessFrom is that gateway's node address. It is empty, with
	// LivenessError saying why, when no active leader could be asked:
	// the members are then shown as not alive, and none as live.
	LivenessFrom  string `json:"liveness_from"`
	LivenessError string `json:"liveness_error,omitempty"`
}

// MemberStatus is one member in ClusterStatus.
type MemberStatus struct {
	Slot         uint32 `json:"slot"`
	ID           string `json:"id"`
	NodeAddress  string `json:"node_address"`
	AdminAddress string `json:"admin_address"`
	Alive        bool   `json:"alive"`
	StorageReady bool   `json:"storage_ready"`
	// Messages and Bytes are what the member reports storing (every
	// version it holds); Indexed is how many indexed messages name it.
	Messages      uint64 `json:"messages"`
	Bytes         uint64 `json:"bytes"`
	Indexed       int64  `json:"indexed"`
	InFlight      int    `json:"in_flight"`
	LastHeartbeat string `json:"last_heartbeat,omitempty"`
	// WritesRefused says why the member takes no writes ("disk full:
	// ..."); it is still read from. Empty while it takes writes.
	WritesRefused string `json:"writes_refused,omitempty"`
	// DiskFreeBytes is the free space the member last reported on its
	// data dir's filesystem.
	DiskFreeBytes uint64 `json:"disk_free_bytes,omitempty"`
}

type statusRequest struct{}

// status is this gateway's view of the cluster. Only the active leader
// knows the members' liveness and load; another gateway lists the
// registered members as not alive, and its admin API fills their liveness
// in from the leader (WithLiveness).
func (l *leader) status(ctx actor.Context) *ClusterStatus {
	st := &ClusterStatus{
		Leader:    l.leaderAddress(),
		Active:    l.active,
		Tolerance: l.cfg.Tolerance,
		Balancer:  string(l.cfg.Balancer),
		Epoch:     l.state.Epoch(),
		Messages:  l.state.Len(),
		LiveCount: l.liveCount(),
		Members:   []MemberStatus{},
	}
	counts := l.state.Counts()
	for _, m := range l.state.Members() {
		st.Members = append(st.Members, l.memberStatus(m, counts))
	}
	st.LivenessSource = l.livenessSource(ctx)
	return st
}

// livenessSource is where this gateway's figures of the members come
// from: itself while it is the active leader.
func (l *leader) livenessSource(ctx actor.Context) LivenessSource {
	if l.active {
		return LivenessSource{LivenessFrom: ctx.Self().Address}
	}
	return LivenessSource{LivenessError: errNotTracked.Error()}
}

// errNotTracked says why a gateway that does not lead knows nothing of the
// members' liveness.
var errNotTracked = errors.New("this gateway does not lead: only the active leader tracks the members' liveness")

// liveness is this gateway's report of the members' liveness and load
// (MemberLivenessRequest): the active leader's soft state, or from any
// other gateway only whom it knows to lead.
func (l *leader) liveness(ctx actor.Context) *messages.MemberLiveness {
	lv := &messages.MemberLiveness{Active: l.active, NodeAddress: ctx.Self().Address}
	if !l.active {
		lv.Leader = l.leaderAddress()
		return lv
	}
	lv.LiveMembers = uint32(l.liveCount())
	for _, m := range l.state.Members() {
		if live := l.memberLive(m.Slot); live != nil {
			lv.Members = append(lv.Members, live)
		}
	}
	return lv
}

// memberLive is this gateway's soft state of the member in slot, or nil
// if it has none: the one place the leader's view of a member becomes
// figures, for /api/cluster here and on every other gateway.
func (l *leader) memberLive(slot uint32) *messages.MemberLive {
	v := l.slot(slot)
	if v == nil {
		return nil
	}
	live := &messages.MemberLive{
		Slot: slot, Alive: v.alive, StorageReady: v.ready,
		Messages: v.messages, Bytes: v.bytes, InFlight: uint32(v.inflight),
		WritesRefused: v.writesRefused, DiskFreeBytes: v.diskFree,
	}
	if !v.lastHeard.IsZero() {
		live.LastHeartbeatUnixNano = v.lastHeard.UnixNano()
	}
	return live
}

// RequestLiveness asks the leader actor at pid for its report of the
// members' liveness and load; when that gateway does not lead, it asks the
// gateway it names as leader, once. The report comes from the active
// leader or it is an error.
func RequestLiveness(root *actor.RootContext, pid *actor.PID, timeout time.Duration) (*messages.MemberLiveness, error) {
	lv, err := askLiveness(root, pid, timeout)
	if err != nil || lv.GetActive() {
		return lv, err
	}
	lead := lv.GetLeader()
	if lead == "" || lead == pid.GetAddress() {
		return nil, fmt.Errorf("%w, and no active leader is known", errNotTracked)
	}
	lv, err = askLiveness(root, actor.NewPID(lead, messages.LeaderActor), timeout)
	switch {
	case err != nil:
		return nil, fmt.Errorf("ask the leading gateway %s: %w", lead, err)
	case !lv.GetActive():
		return nil, fmt.Errorf("the gateway %s known to lead does not serve as leader (yet)", lead)
	}
	return lv, nil
}

func askLiveness(root *actor.RootContext, pid *actor.PID, timeout time.Duration) (*messages.MemberLiveness, error) {
	lv, err := cluster.Ask[*messages.MemberLiveness](root, pid, &messages.MemberLivenessRequest{}, timeout)
	if err != nil {
		return nil, fmt.Errorf("ask for the members' liveness: %w", err)
	}
	return lv, nil
}

// WithLiveness shows the members' liveness and load as the active leader
// reported them in lv, or, when err says why none could be had, as not
// known.
func (st *ClusterStatus) WithLiveness(lv *messages.MemberLiveness, err error) {
	if st.LivenessSource.set(lv, err) {
		st.LiveCount = int(lv.GetLiveMembers())
		for i := range st.Members {
			st.Members[i].withLiveness(lv)
		}
	}
}

// WithLiveness shows the replicas' liveness and load as the active leader
// reported them in lv, or, when err says why none could be had, as not
// known.
func (loc *Location) WithLiveness(lv *messages.MemberLiveness, err error) {
	if loc.LivenessSource.set(lv, err) {
		for i := range loc.Replicas {
			loc.Replicas[i].withLiveness(lv)
		}
	}
}

// set records where the figures come from, and says whether lv holds them.
func (s *LivenessSource) set(lv *messages.MemberLiveness, err error) bool {
	if err != nil {
		*s = LivenessSource{LivenessError: err.Error()}
		return false
	}
	*s = LivenessSource{LivenessFrom: lv.GetNodeAddress()}
	return true
}

func (ms *MemberStatus) withLiveness(lv *messages.MemberLiveness) {
	for _, live := range lv.GetMembers() {
		if live.GetSlot() == ms.Slot {
			ms.setLive(live)
			return
		}
	}
}

// setLive shows a member's liveness and load as live reports them.
func (ms *MemberStatus) setLive(live *messages.MemberLive) {
	ms.Alive, ms.StorageReady = live.GetAlive(), live.GetStorageReady()
	ms.Messages, ms.Bytes, ms.InFlight = live.GetMessages(), live.GetBytes(), int(live.GetInFlight())
	ms.WritesRefused, ms.DiskFreeBytes = live.GetWritesRefused(), live.GetDiskFreeBytes()
	ms.LastHeartbeat = ""
	if ns := live.GetLastHeartbeatUnixNano(); ns != 0 {
		ms.LastHeartbeat = time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
	}
}

// memberStatus is what the leader knows of one registered member: the
// same figures in /api/cluster and /api/messages/{id}.
func (l *leader) memberStatus(m meta.Member, counts map[uint32]int64) MemberStatus {
	ms := MemberStatus{
		Slot: m.Slot, ID: m.ID, NodeAddress: m.NodeAddress, AdminAddress: m.AdminAddress,
		Indexed: counts[m.Slot],
	}
	if live := l.memberLive(m.Slot); live != nil {
		ms.setLive(live)
	}
	return ms
}

// RequestStatus asks the leader at pid for the cluster status.
func RequestStatus(root *actor.RootContext, pid *actor.PID, timeout time.Duration) (*ClusterStatus, error) {
	st, err := cluster.Ask[*ClusterStatus](root, pid, &statusRequest{}, timeout)
	if err != nil {
		return nil, fmt.Errorf("ask leader for cluster status: %w", err)
	}
	return st, nil
}

// Location is where one message is stored, served as /api/messages/{id}.
type Location struct {
	ID    int64 `json:"id"`
	Found bool  `json:"found"`
	// Version is the indexed version, Epoch<<meta.EpochShift | Counter:
	// the leader epoch that minted it and its place within that epoch.
	Version uint64 `json:"version,omitempty"`
	Epoch   uint64 `json:"epoch,omitempty"`
	Counter uint64 `json:"counter,omitempty"`
	// Size is the message's length in bytes.
	Size uint32 `json:"size,omitempty"`
	// Replicas are the members holding this version, with the same
	// figures as in /api/cluster.
	Replicas []MemberStatus `json:"replicas,omitempty"`
	LivenessSource
}

type locateRequest struct{ id int64 }

func (l *leader) locate(ctx actor.Context, id int64) *Location {
	loc := &Location{ID: id, LivenessSource: l.livenessSource(ctx)}
	version, replicas, size, ok := l.state.LookupSized(id)
	if !ok {
		return loc
	}
	loc.Found, loc.Version, loc.Size = true, version, size
	loc.Epoch, loc.Counter = version>>meta.EpochShift, version&meta.MaxCounter
	counts := l.state.Counts()
	for _, slot := range replicas {
		m, _ := l.state.Member(slot)
		m.Slot = slot
		loc.Replicas = append(loc.Replicas, l.memberStatus(m, counts))
	}
	return loc
}

// RequestLocation asks the leader at pid where a message is stored.
func RequestLocation(root *actor.RootContext, pid *actor.PID, id int64, timeout time.Duration) (*Location, error) {
	loc, err := cluster.Ask[*Location](root, pid, &locateRequest{id: id}, timeout)
	if err != nil {
		return nil, fmt.Errorf("ask leader where %d is: %w", id, err)
	}
	return loc, nil
}
