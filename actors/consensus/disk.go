package consensus

import (
	"fmt"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/tolerex/tolerex/storage/diskspace"
)

// The Raft log's disk guard. A gateway whose Raft log cannot be written
// crashes (Pebble stops on a failed log write) and, restarted on a full
// disk, cannot even vote. So, as members do for their stores, a gateway
// keeps a free-space watermark (Config.MinFreeBytes) on its Raft log's
// filesystem, checked every tick. Below it the gateway takes no new log
// entries: as leader it refuses proposals (clients get a definite
// "disk full" error; reads still work) and hands its leadership to
// another gateway once; as follower it ignores the leader's appends and
// snapshots, which Raft treats as lost messages, so it falls behind
// instead of failing, and catches up once space is back. Heartbeats,
// votes and ReadIndex rounds still work: they write a few bytes at most.
// /readyz says why the gateway is not ready. Writes resume at a quarter
// more free space than the watermark (diskspace.Watermark).

// checkDisk asks the guard and follows a change.
func (n *node) checkDisk() {
	if n.disk == nil {
		return
	}
	st := n.disk.Check()
	switch {
	case st.Refusing && n.diskFull == "":
		mark := n.disk.Watermark()
		n.diskFull = fmt.Sprintf("disk full: the Raft log's filesystem has %d bytes free, below the %d-byte watermark (--min-free-bytes); "+
			"this gateway takes no new log entries until %d bytes are free", st.Free, mark.MinFree, mark.ResumeFree)
		n.log.Warn().Uint64("free_bytes", st.Free).Uint64("min_free_bytes", mark.MinFree).Str("dir", n.cfg.Dir).
			Msg("disk full: the Raft log takes no new entries; reads still work")
		if n.isLeader {
			if err := n.transfer(0); err != nil {
				n.log.Warn().Err(err).Msg("disk full: could not hand leadership over; this gateway refuses writes while it leads")
			}
		}
	case !st.Refusing && n.diskFull != "":
		n.diskFull = ""
		n.log.Info().Uint64("free_bytes", st.Free).Msg("disk space back: the Raft log takes entries again")
	default:
		return
	}
	if h := n.cfg.Health; h != nil {
		h.setDiskFull(n.diskFull)
	}
}

// refusesEntries reports whether m would add to the Raft log while the
// disk is full: the leader's appends and snapshots.
func (n *node) refusesEntries(m *raftpb.Message) bool {
	return n.diskFull != "" && (m.GetType() == raftpb.MsgApp || m.GetType() == raftpb.MsgSnap)
}

// newDiskGuard returns the guard of the Raft log's filesystem, nil if the
// check is off.
func newDiskGuard(cfg Config) *diskspace.Guard {
	if cfg.MinFreeBytes == 0 {
		return nil
	}
	return diskspace.NewGuard(cfg.Dir, diskspace.NewWatermark(cfg.MinFreeBytes), cfg.Statfs, nil)
}
