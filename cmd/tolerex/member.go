package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tolerex/tolerex/actors/member"
	"github.com/tolerex/tolerex/actors/tree"
	"github.com/tolerex/tolerex/cluster"
	"github.com/tolerex/tolerex/cluster/certs"
	"github.com/tolerex/tolerex/messages"
)

type memberFlags struct {
	node           nodeFlags
	join           string
	faultInjection bool
	heartbeat      time.Duration
	maxRestarts    int
	maxBackoff     time.Duration
	minFree        byteSize
}

// defaultMinFree is the default free-space watermark of a member's data
// dir, and of a gateway's Raft log (--min-free-bytes of both). It leaves room for what Pebble writes after the last accepted put
// (measured with Tolerex's 16 MiB memtable, docs/operations.md "Full
// disks"): a group commit in flight (up to 8 MiB), a new write-ahead log
// preallocated at 17.6 MiB, the flush of up to two memtables (32 MiB),
// and about 200 MiB for compactions, which write their output before
// deleting their input.
const defaultMinFree = 256 << 20

func newMemberCommand() *cobra.Command {
	var f memberFlags
	cmd := &cobra.Command{
		Use:   "member",
		Short: "Run a member node: durable storage for replicated messages",
		Long: `Run a member node. It stores message copies durably under --data-dir,
registers with the gateways given by --join (their --node-addr, comma-
separated; any of them will do: the member finds the one that leads) and
heartbeats to the leading one. A member keeps its identity in --data-dir/member.id, so a
restart with the same data dir rejoins as the same member with its data.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMember(cmd.Context(), f)
		},
	}
	fs := cmd.Flags()
	f.node.register(fs, "127.0.0.1:7001", "127.0.0.1:8001", "")
	fs.StringVar(&f.join, "join", "127.0.0.1:7000", "the gateways' node addresses (their --node-addr), comma-separated; the member heartbeats to the one that leads")
	fs.BoolVar(&f.faultInjection, "fault-injection", false, "accept POST /debug/fault/storage-panic, /debug/fault/drop-store-acks?count=N and /debug/fault/drop-read-replies?count=N on the admin port (crash tests only)")
	fs.DurationVar(&f.heartbeat, "heartbeat", 250*time.Millisecond, "interval between heartbeats to the leading gateway (it also bounds how soon a member re-homes after a leader change)")
	def := member.DefaultRestartPolicy()
	fs.IntVar(&f.maxRestarts, "storage-max-restarts", def.MaxRestarts, fmt.Sprintf("restarts of a crashing storage actor allowed within %s before it is stopped for good", def.Window))
	fs.DurationVar(&f.maxBackoff, "storage-max-backoff", def.MaxBackoff, fmt.Sprintf("longest wait before restarting a crashed storage actor (the wait starts at %s and doubles)", def.InitialBackoff))
	f.minFree = defaultMinFree
	fs.Var(&f.minFree, "min-free-bytes", "free space the data dir's filesystem must keep: below it the member refuses writes (still serving reads) until a quarter more is free again; bytes, or with KiB, MiB, GiB or TiB; 0 turns the check off")
	return cmd
}

func runMember(ctx context.Context, f memberFlags) error {
	if err := f.node.validate(); err != nil {
		return fmt.Errorf("%w (each member needs its own)", err)
	}
	gateways := joinList(f.join)
	if len(gateways) == 0 {
		return errors.New("--join is required: the gateways' --node-addr, comma-separated")
	}
	for _, addr := range gateways {
		if err := cluster.CheckNodeAddress(addr); err != nil {
			return fmt.Errorf("--join: %w", err)
		}
	}
	if f.heartbeat <= 0 {
		return errors.New("--heartbeat must be positive")
	}
	restart := member.DefaultRestartPolicy()
	restart.MaxRestarts, restart.MaxBackoff = f.maxRestarts, f.maxBackoff
	if restart.MaxRestarts < 0 || restart.MaxBackoff < restart.InitialBackoff {
		return fmt.Errorf("--storage-max-restarts must be >= 0 and --storage-max-backoff >= %s", restart.InitialBackoff)
	}
	status := &member.Status{}
	node, admin, err := f.node.start(certs.RoleMember, status.NotReady)
	if err != nil {
		return err
	}
	log := node.Logger
	memberID, err := loadMemberID(f.node.dataDir)
	if err != nil {
		return err
	}
	log = log.With().Str("member", memberID).Logger()
	log.Info().Str("node", node.Address()).Str("admin", admin.Addr()).Str("join", f.join).Str("data_dir", f.node.dataDir).
		Uint64("min_free_bytes", uint64(f.minFree)).Msg("starting member")

	cfg := member.Config{
		MemberID:          memberID,
		AdminAddress:      admin.Addr(),
		Gateways:          gateways,
		HeartbeatInterval: f.heartbeat,
		Restart:           restart,
		Storage: member.StorageConfig{
			Dir:          filepath.Join(f.node.dataDir, "store"),
			Sync:         f.node.sync,
			MinFreeBytes: uint64(f.minFree),
			Metrics:      member.NewStorageMetrics(node.Registry, status),
		},
		Probe:  node.GatewayProbe(),
		Tree:   node.Tree,
		Status: status,
		Logger: log,
	}
	root := node.System.Root
	pid, err := root.SpawnNamed(node.Tree.Props("member", member.NewSupervisor(cfg)), messages.MemberActor)
	if err != nil {
		return fmt.Errorf("spawn member supervisor: %w", err)
	}
	admin.HandleFunc("GET /api/tree", func(w http.ResponseWriter, _ *http.Request) {
		cluster.WriteJSON(w, treeOfNode(node, string(certs.RoleMember), memberID))
	})
	admin.HandleFunc("GET /api/cluster", func(w http.ResponseWriter, _ *http.Request) {
		cluster.WriteJSON(w, memberView{
			Role: "member", MemberID: memberID, NodeAddress: node.Address(), Gateway: status.Gateway(),
			Registered: status.Registered.Load(), Slot: status.Slot.Load(),
			StorageReady: status.StorageReady.Load(), Messages: status.Messages.Load(), Bytes: status.Bytes.Load(),
			StorageCorrupt: status.StoreCorrupt(), CorruptReads: status.CorruptReads.Load(), LastCorruption: status.LastCorruption(),
			WritesRefused: status.WritesRefused(), ReadOnly: status.ReadOnly.Load(),
			DiskFreeBytes: status.DiskFree(), DiskTotalBytes: status.DiskTotal(), MinFreeBytes: status.MinFree(),
		})
	})
	if f.faultInjection {
		log.Warn().Msg("--fault-injection: POST /debug/fault/storage-panic crashes the storage actor, POST /debug/fault/drop-store-acks?count=N drops its next N acknowledgements, POST /debug/fault/drop-read-replies?count=N its next N read answers")
		storage := node.System.NewLocalPID(messages.StorageActor)
		admin.HandleFunc("POST /debug/fault/storage-panic", func(w http.ResponseWriter, _ *http.Request) {
			root.Send(storage, &member.InjectPanic{})
			fmt.Fprintln(w, "storage actor told to panic")
		})
		admin.HandleFunc("POST /debug/fault/drop-store-acks", func(w http.ResponseWriter, r *http.Request) {
			if count, ok := faultCount(w, r); ok {
				root.Send(storage, &member.InjectDropAcks{Count: count})
				fmt.Fprintf(w, "storage actor told to drop its next %d acknowledgement message(s)\n", count)
			}
		})
		admin.HandleFunc("POST /debug/fault/drop-read-replies", func(w http.ResponseWriter, r *http.Request) {
			if count, ok := faultCount(w, r); ok {
				root.Send(storage, &member.InjectDropReadReplies{Count: count})
				fmt.Fprintf(w, "storage actor told to drop its next %d read answer message(s)\n", count)
			}
		})
	}
	serveUntilDone(ctx, node, admin, nil, pid)
	return nil
}

// faultCount reads a fault endpoint's ?count=N (default 1); on a bad value
// it answers 400 and reports false.
func faultCount(w http.ResponseWriter, r *http.Request) (int, bool) {
	v := r.URL.Query().Get("count")
	if v == "" {
		return 1, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		http.Error(w, fmt.Sprintf("count %q: want a whole number, 0 or more", v), http.StatusBadRequest)
		return 0, false
	}
	return n, true
}

// memberView is a member's /api/cluster: its own view; the gateway's
// /api/cluster has the whole cluster.
type memberView struct {
	Role         string `json:"role"`
	MemberID     string `json:"member_id"`
	NodeAddress  string `json:"node_address"`
	Gateway      string `json:"gateway"`
	Registered   bool   `json:"registered"`
	Slot         uint32 `json:"slot"`
	StorageReady bool   `json:"storage_ready"`
	Messages     uint64 `json:"messages"`
	Bytes        uint64 `json:"bytes"`
	// StorageCorrupt says why the store is unusable because it is corrupt.
	StorageCorrupt string `json:"storage_corrupt,omitempty"`
	// CorruptReads counts reads refused because their record was damaged.
	CorruptReads uint64 `json:"corrupt_reads"`
	// LastCorruption is the last damage the store found.
	LastCorruption string `json:"last_corruption,omitempty"`
	// WritesRefused says why the member refuses writes ("disk full: ..."),
	// while it does; it still serves reads.
	WritesRefused string `json:"writes_refused,omitempty"`
	// ReadOnly is true while the store is open read-only (the disk was
	// nearly full when it was opened).
	ReadOnly bool `json:"read_only"`
	// DiskFreeBytes and DiskTotalBytes are the store's filesystem as last
	// checked; MinFreeBytes is the watermark (--min-free-bytes).
	DiskFreeBytes  uint64 `json:"disk_free_bytes"`
	DiskTotalBytes uint64 `json:"disk_total_bytes"`
	MinFreeBytes   uint64 `json:"min_free_bytes"`
}

// joinList splits --join into node addresses.
func joinList(join string) []string {
	var out []string
	for _, a := range strings.Split(join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// loadMemberID reads the member's stable id from its data dir, creating
// it on first start.
func loadMemberID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "member.id")
	data, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(data))
		if id == "" {
			return "", fmt.Errorf("%s is empty; delete it to get a new member id", path)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read member id: %w", err)
	}
	raw := make([]byte, 6)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generate member id: %w", err)
	}
	id := "m-" + hex.EncodeToString(raw)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write member id: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write member id: %w", err)
	}
	return id, nil
}

func treeOfNode(node *cluster.Node, role, memberID string) any {
	return tree.ClusterView{Nodes: []tree.NodeView{tree.ViewOf(node.Tree.Local(node.Address(), role, memberID))}}
}
