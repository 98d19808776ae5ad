package consensus

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/tolerex/tolerex/storage/diskspace"
)

// The Raft log's disk guard. A Raft log write that fails leaves Pebble
// taking no more writes, and a gateway that cannot write its log cannot
// even vote. So, as members do for their stores, a gateway
// keeps a free-space watermark (Config.MinFreeBytes) on its Raft log's
// filesystem, checked every tick. Below it the gateway takes no new log
// entries: as leader it refuses proposals (clients get a definite
// "disk full" error; reads still work) and hands its leadership to
// another gateway whenever it leads (handOverIfAside); as follower it
// ignores the leader's appends and snapshots, which Raft treats as lost
// messages, so it falls behind instead of failing, and catches up once
// space is back. Heartbeats, votes and ReadIndex rounds still work: they
// write a few bytes at most.
// /readyz says why the gateway is not ready. Writes resume at a quarter
// more free space than the watermark (diskspace.Watermark).

// checkDisk asks the guard, reports the free space and follows a change.
// While the disk is full the reason is rewritten whenever the free space
// moves, so /readyz and the clients' errors give the current figure.
func (n *node) checkDisk() {
	st := n.disk.Check()
	mark := n.disk.Watermark()
	n.observeDisk(st, mark, st.Refusing)
	reason := ""
	if st.Refusing {
		reason = fmt.Sprintf("disk full: the Raft log's filesystem has %d bytes free, below the %d-byte watermark (--min-free-bytes); "+
			"this gateway takes no new log entries until %d bytes are free", st.Free, mark.MinFree, mark.ResumeFree)
	}
	if reason == n.diskFull {
		return
	}
	switch {
	case reason != "" && n.diskFull == "":
		n.log.Warn().Uint64("free_bytes", st.Free).Uint64("min_free_bytes", mark.MinFree).Str("dir", n.cfg.Dir).
			Msg("disk full: the Raft log takes no new entries; reads still work; this gateway hands its leadership over whenever it leads")
	case reason == "":
		n.log.Info().Uint64("free_bytes", st.Free).Msg("disk space back: the Raft log takes entries again")
	}
	n.setDiskFull(reason)
}

// setDiskFull records why the Raft log takes no new entries ("": it
// does), for the proposals refused and for /readyz.
func (n *node) setDiskFull(reason string) {
	n.diskFull = reason
	if h := n.cfg.Health; h != nil {
		h.setDiskFull(reason)
	}
}

// refusesEntries reports whether m would add to the Raft log while the
// disk is full: the leader's appends and snapshots.
func (n *node) refusesEntries(m *raftpb.Message) bool {
	return n.diskFull != "" && (m.GetType() == raftpb.MsgApp || m.GetType() == raftpb.MsgSnap)
}

// newDiskGuard returns the guard of the Raft log's filesystem. With
// MinFreeBytes 0 it never refuses, but still measures the free space for
// the metrics.
func newDiskGuard(cfg Config) *diskspace.Guard {
	return diskspace.NewGuard(cfg.Dir, diskspace.NewWatermark(cfg.MinFreeBytes), cfg.Statfs, nil)
}

// A log write can still fail with ENOSPC: the disk filled faster than the
// ticks check it, or the watermark is off. Pebble then takes no more
// writes, so the consensus actor crashes (written) and its supervisor
// restarts it; reopening the log on a disk with no room would hang in
// Pebble's recovery, so the restarted actor first waits for space
// (waitForSpace): until the resume mark is free it runs no Raft, /readyz
// says why, and the leader actor hears that consensus is unavailable (so
// it refuses requests at once) until it is available again. With the
// watermark off nothing tells when space is back: the gateway must be
// restarted once it is.

// spaceCheckInterval is how often a gateway waiting for space checks.
const spaceCheckInterval = time.Second

// waitForSpace reports whether start must wait because the last log write
// failed with ENOSPC and the disk still has no room, and if so says why
// and checks again later.
func (n *node) waitForSpace(ctx actor.Context) bool {
	if !n.kept.noSpace {
		return false
	}
	mark := n.disk.Watermark()
	st := n.disk.Check()
	reason := spaceWanted(st, mark)
	n.observeDisk(st, mark, reason != "")
	if reason == "" {
		n.kept.noSpace = false
		n.log.Info().Uint64("free_bytes", st.Free).Msg("disk space back: reopening the Raft log")
		n.publish(ctx, &Available{})
		return false
	}
	if mark.MinFree > 0 {
		self := ctx.Self()
		time.AfterFunc(spaceCheckInterval, func() { n.root.Send(self, spaceCheck{}) })
	}
	if reason != n.diskFull {
		n.log.Warn().Str("reason", reason).Msg("waiting for disk space before reopening the Raft log")
		// The leader actor refuses requests at once meanwhile, with the
		// reason, instead of holding them until their deadline for a
		// leader this gateway cannot learn of.
		n.publish(ctx, &Unavailable{Reason: reason})
	}
	n.setDiskFull(reason)
	return true
}

// observeDisk puts a check of the Raft log's filesystem in the metrics.
func (n *node) observeDisk(st diskspace.State, mark diskspace.Watermark, refusing bool) {
	m := n.cfg.Metrics
	if m == nil {
		return
	}
	if st.Checked {
		m.DiskFreeBytes.Set(float64(st.Free))
		m.DiskMinFreeBytes.Set(float64(mark.MinFree))
	}
	m.WritesRefused.Set(b2f(refusing))
}

// spaceWanted says why a gateway whose last log write failed with ENOSPC
// must wait before reopening its log, given its disk's state and the
// watermark; "" once it may reopen it.
func spaceWanted(st diskspace.State, mark diskspace.Watermark) string {
	switch {
	case mark.MinFree == 0:
		return "disk full: a Raft log write failed with no space left on device, and with --min-free-bytes 0 " +
			"this gateway cannot tell when space is back: restart it once space is freed"
	case st.Checked && st.Free >= mark.ResumeFree:
		return ""
	default:
		return fmt.Sprintf("disk full: a Raft log write failed with no space left on device; this gateway runs no Raft "+
			"until %d bytes are free on the Raft log's filesystem (%d now)", mark.ResumeFree, st.Free)
	}
}

// checkSpaceBack starts consensus once a gateway waiting for space has it.
func (n *node) checkSpaceBack(ctx actor.Context) {
	if n.rn == nil && n.raftLog == nil && n.kept.noSpace {
		n.start(ctx)
	}
}
