package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/tolerex/tolerex/cluster"
	"github.com/tolerex/tolerex/cluster/certs"
	"github.com/tolerex/tolerex/gateway"
)

// nodeFlags are the flags every node (gateway or member) takes.
type nodeFlags struct {
	nodeAddr        string
	adminAddr       string
	dataDir         string
	tlsDir          string
	insecure        bool
	sync            bool
	logLevel        string
	maxMessageBytes int
	actorMetrics    bool
	gcPercent       int
	maxProcs        int
}

// defaultGCPercent is the garbage collector's target for nodes: a node's
// live heap is small (the gateway's index is 56 bytes a message) and its
// garbage is per-request, so letting the heap grow to 4x the live heap
// between collections buys CPU for requests (SET 64 conns: gateway CPU
// per SET 60-75 us -> 58-66 us, p99 12 ms -> 10 ms).
const defaultGCPercent = 300

// register adds the node flags to fs with the given defaults. An empty
// dataDir makes --data-dir required (validate enforces it; cobra's own
// required-flag check would run before TOLEREX_DATA_DIR is applied).
func (f *nodeFlags) register(fs *pflag.FlagSet, nodeAddr, adminAddr, dataDir string) {
	fs.StringVar(&f.nodeAddr, "node-addr", nodeAddr, "host:port of this node's remote (actor) endpoint; other nodes connect here")
	fs.StringVar(&f.adminAddr, "admin-addr", adminAddr, "host:port of the admin HTTP server (/healthz, /readyz, /metrics, /api/cluster, /api/tree, /debug/pprof)")
	dataDirUsage := "directory for this node's durable data"
	if dataDir == "" {
		dataDirUsage += " (required; each node needs its own)"
	}
	fs.StringVar(&f.dataDir, "data-dir", dataDir, dataDirUsage)
	fs.StringVar(&f.tlsDir, "tls-dir", "", "directory with ca.crt and this role's certificate pair (from \"tolerex certs\")")
	fs.BoolVar(&f.insecure, "insecure", false, "run the node-to-node traffic in plaintext (no --tls-dir needed); never in production")
	fs.BoolVar(&f.sync, "sync", true, "fsync before acknowledging writes; --sync=false is UNSAFE: a crash of the process or the machine can lose acknowledged writes")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: trace, debug, info, warn or error")
	fs.IntVar(&f.maxMessageBytes, "max-message-bytes", gateway.DefaultMaxMessageBytes, "largest message a client may store")
	fs.BoolVar(&f.actorMetrics, "protoactor-metrics", true, "export protoactor's own actor metrics (protoactor_*); they cost a few microseconds per actor message")
	fs.IntVar(&f.gcPercent, "gc-percent", defaultGCPercent, "Go garbage collector target (as GOGC): the heap may grow by this percentage of the live heap between collections; higher spends less CPU on collection and more memory (Go's default is 100). A GOGC environment variable takes precedence")
	fs.IntVar(&f.maxProcs, "max-procs", 0, "most cores this process runs Go code on at once (as GOMAXPROCS); 0 is Go's default: every core, or the container's CPU limit. Lower it when several nodes share a machine. A GOMAXPROCS environment variable takes precedence")
}

func (f *nodeFlags) validate() error {
	if f.dataDir == "" {
		return fmt.Errorf("--data-dir is required")
	}
	if f.maxMessageBytes < 1 {
		return fmt.Errorf("--max-message-bytes must be positive")
	}
	if f.gcPercent < 10 {
		return fmt.Errorf("--gc-percent must be at least 10, got %d", f.gcPercent)
	}
	if f.maxProcs < 0 {
		return fmt.Errorf("--max-procs must be 0 (Go's default) or more, got %d", f.maxProcs)
	}
	return nil
}

// start opens the logger, the metrics registry, the admin listener and the
// actor system with remote, in that order, so that a bad flag or a port in
// use fails before anything runs.
func (f *nodeFlags) start(role certs.Role, ready func() error) (*cluster.Node, *cluster.Admin, error) {
	log, err := cluster.NewLogger(os.Stderr, f.logLevel)
	if err != nil {
		return nil, nil, err
	}
	log = log.With().Str("role", string(role)).Logger()
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(f.gcPercent)
	}
	if os.Getenv("GOMAXPROCS") == "" && f.maxProcs > 0 {
		runtime.GOMAXPROCS(f.maxProcs)
	}
	if !f.sync {
		log.Warn().Msg("--sync=false: writes are acknowledged before they reach the disk; a process or machine crash can lose them")
	}
	if f.insecure {
		log.Warn().Msg("--insecure: node-to-node traffic is plaintext and unauthenticated")
	}
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create data dir: %w", err)
	}
	reg := prometheus.NewRegistry()
	admin, err := cluster.NewAdmin(f.adminAddr, reg, ready, log)
	if err != nil {
		return nil, nil, err
	}
	node, err := cluster.StartNode(cluster.NodeOptions{
		Role:              role,
		NodeAddress:       f.nodeAddr,
		TLSDir:            f.tlsDir,
		Insecure:          f.insecure,
		MaxMessageBytes:   f.maxMessageBytes,
		ProtoactorMetrics: f.actorMetrics,
		Logger:            log,
		Registry:          reg,
	})
	if err != nil {
		return nil, nil, err
	}
	return node, admin, nil
}

// serveUntilDone serves the admin API until ctx ends, then runs before
// (if set), stops the given actors in order (each finishes what it
// accepted), the admin server and the remote layer.
func serveUntilDone(ctx context.Context, node *cluster.Node, admin *cluster.Admin, before func(), actors ...*actor.PID) {
	admin.Serve()
	<-ctx.Done()
	log := node.Logger
	log.Info().Msg("shutting down")
	if before != nil {
		before()
	}
	for _, pid := range actors {
		_ = node.System.Root.StopFuture(pid).Wait()
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = admin.Shutdown(shutdownCtx)
	node.Stop()
	log.Info().Msg("stopped")
}
