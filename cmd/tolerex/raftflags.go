package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	"github.com/tolerex/tolerex/actors/consensus"
	"github.com/tolerex/tolerex/actors/meta"
	"github.com/tolerex/tolerex/cluster"
	"github.com/tolerex/tolerex/messages"
	"github.com/tolerex/tolerex/storage/metalog"
)

// raftFlags are the flags of a gateway's place in the Raft group.
type raftFlags struct {
	id              uint64
	initialCluster  string
	state           string
	tick            time.Duration
	electionTicks   int
	snapshotEntries uint64
	catchUpEntries  uint64
	minFree         byteSize
}

func (f *raftFlags) register(fs *pflag.FlagSet) {
	fs.Uint64Var(&f.id, "gateway-id", 1, "this gateway's id in the Raft group: a number, unique in the group and never reused")
	fs.StringVar(&f.initialCluster, "initial-cluster", "", "the group's gateways when it is first started, as id=node-addr,... (this gateway included); empty: this gateway alone")
	fs.StringVar(&f.state, "initial-cluster-state", "new", "new: start a new group with --initial-cluster (ignored once the data dir holds a Raft log); existing: join a running group that added this gateway (tolerex cluster add-gateway)")
	fs.DurationVar(&f.tick, "raft-tick", consensus.DefaultTickInterval, "the Raft tick: heartbeats go every tick, elections start after --raft-election-ticks")
	fs.IntVar(&f.electionTicks, "raft-election-ticks", consensus.DefaultElectionTicks, "ticks without a leader's heartbeat before a gateway starts an election")
	fs.Uint64Var(&f.snapshotEntries, "snapshot-entries", consensus.DefaultSnapshotEntries, "applied log entries between snapshots of the index (the log before a snapshot is then dropped, but for a tail kept for gateways that lag)")
	f.minFree = defaultMinFree
	fs.Var(&f.minFree, "min-free-bytes", "free space the Raft log's filesystem must keep: below it the gateway takes no new log entries (as leader it refuses writes with a definite \"disk full\" error and hands its leadership over; as follower it falls behind) until a quarter more is free again; reads still work; bytes, or with KiB, MiB, GiB or TiB; 0 turns the check off")
	fs.Uint64Var(&f.catchUpEntries, "snapshot-catch-up-entries", consensus.DefaultCatchUpEntries, "log entries kept before a snapshot, so a gateway that lags by fewer catches up from the log instead of a snapshot")
	fs.Uint64Var(&f.snapshotEntries, "snapshot-min-entries", consensus.DefaultSnapshotEntries, "the name --snapshot-entries had before the gateways formed a Raft group")
	_ = fs.MarkDeprecated("snapshot-min-entries", "use --snapshot-entries")
}

// raftGroup is a resolved --gateway-id and --initial-cluster.
type raftGroup struct {
	id    uint64
	peers []consensus.Peer
}

func (g raftGroup) describe() string {
	parts := make([]string, len(g.peers))
	for i, p := range g.peers {
		parts[i] = fmt.Sprintf("%d=%s", p.ID, p.NodeAddress)
	}
	return strings.Join(parts, ",")
}

// resolve checks the flags and parses --initial-cluster; nodeAddr is this
// gateway's --node-addr.
func (f *raftFlags) resolve(nodeAddr string) (raftGroup, error) {
	g := raftGroup{id: f.id}
	if f.id == 0 {
		return g, errors.New("--gateway-id must be at least 1")
	}
	if f.state != "new" && f.state != "existing" {
		return g, fmt.Errorf("--initial-cluster-state %q: want new or existing", f.state)
	}
	if f.tick <= 0 || f.electionTicks < 2 {
		return g, errors.New("--raft-tick must be positive and --raft-election-ticks at least 2")
	}
	if f.snapshotEntries == 0 {
		return g, errors.New("--snapshot-entries must be positive")
	}
	if strings.TrimSpace(f.initialCluster) == "" {
		g.peers = []consensus.Peer{{ID: f.id, NodeAddress: nodeAddr}}
		return g, nil
	}
	for _, part := range strings.Split(f.initialCluster, ",") {
		idText, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		id, err := strconv.ParseUint(idText, 10, 64)
		if !ok || err != nil || id == 0 || addr == "" {
			return g, fmt.Errorf("--initial-cluster: %q is not id=node-addr (a positive id)", part)
		}
		if err := cluster.CheckNodeAddress(addr); err != nil {
			return g, fmt.Errorf("--initial-cluster: gateway %d: %w", id, err)
		}
		if slices.ContainsFunc(g.peers, func(p consensus.Peer) bool { return p.ID == id || p.NodeAddress == addr }) {
			return g, fmt.Errorf("--initial-cluster names id %d or address %s twice", id, addr)
		}
		g.peers = append(g.peers, consensus.Peer{ID: id, NodeAddress: addr})
	}
	i := slices.IndexFunc(g.peers, func(p consensus.Peer) bool { return p.ID == f.id })
	switch {
	case i < 0 && f.state == "new":
		return g, fmt.Errorf("--initial-cluster does not name this gateway's id %d", f.id)
	case i >= 0 && g.peers[i].NodeAddress != nodeAddr:
		return g, fmt.Errorf("--initial-cluster gives gateway %d the address %s, but its --node-addr is %s", f.id, g.peers[i].NodeAddress, nodeAddr)
	}
	return g, nil
}

// migrateMetadataLog upgrades a gateway whose index is still in the
// version-1 metadata log (dataDir/meta, before the gateways formed a Raft
// group): its state becomes the snapshot a new Raft log of a group of one
// starts from, and the old directory is renamed meta.v1 (kept, not
// deleted). It does nothing when a Raft log exists or there is no old log.
func migrateMetadataLog(dataDir, raftDir string, g raftGroup, sync bool, log zerolog.Logger) error {
	oldDir := filepath.Join(dataDir, "meta")
	if _, err := os.Stat(filepath.Join(oldDir, "CURRENT")); err != nil {
		return nil // no version-1 log
	}
	if entries, err := os.ReadDir(raftDir); err == nil && len(entries) > 0 {
		return nil
	}
	if len(g.peers) != 1 {
		return fmt.Errorf("%s holds a version-1 metadata log: upgrade it as a group of one (no --initial-cluster), then add gateways", oldDir)
	}
	state, entries, err := loadMetadataLog(oldDir)
	if err != nil {
		return fmt.Errorf("upgrade %s: %w", oldDir, err)
	}
	if err := consensus.WriteState(raftDir, g.id, g.peers[0].NodeAddress, state, 1, 1, sync); err != nil {
		return fmt.Errorf("upgrade %s: %w", oldDir, err)
	}
	if err := os.Rename(oldDir, oldDir+".v1"); err != nil {
		return fmt.Errorf("upgrade %s: %w", oldDir, err)
	}
	log.Warn().Str("from", oldDir).Str("to", raftDir).Int("messages", state.Len()).Int("entries_replayed", entries).
		Msg("upgraded the version-1 metadata log to a Raft log (the old one is kept as meta.v1)")
	return nil
}

// loadMetadataLog rebuilds the state a version-1 metadata log holds.
func loadMetadataLog(dir string) (*meta.State, int, error) {
	mlog, err := metalog.Open(dir, metalog.Options{OnCommit: func([]metalog.Committed) {}})
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = mlog.Close() }()
	state, entries := meta.New(), 0
	err = mlog.Load(
		func(_ uint64, data []byte) error {
			var snap messages.MetaSnapshot
			if err := proto.Unmarshal(data, &snap); err != nil {
				return fmt.Errorf("decode snapshot: %w", err)
			}
			restored, err := meta.Restore(&snap)
			if err == nil {
				state = restored
			}
			return err
		},
		func(_ uint64, data []byte) error {
			var e messages.LogEntry
			if proto.Unmarshal(data, &e) == nil {
				_, _ = state.Apply(&e) // rejected entries change nothing, as on replay
			}
			entries++
			return nil
		})
	return state, entries, err
}
