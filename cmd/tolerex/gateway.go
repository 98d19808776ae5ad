package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/tolerex/tolerex/actors/consensus"
	"github.com/tolerex/tolerex/actors/leader"
	"github.com/tolerex/tolerex/actors/membership"
	"github.com/tolerex/tolerex/actors/selector"
	"github.com/tolerex/tolerex/cluster/certs"
	"github.com/tolerex/tolerex/gateway"
	"github.com/tolerex/tolerex/messages"
)

type gatewayFlags struct {
	node           nodeFlags
	raft           raftFlags
	requestTimeout time.Duration
	drainTimeout   time.Duration
	clientAddr     string
	tolerance      int
	toleranceFile  string
	balancer       string
	noPrompt       bool
	storeTimeout   time.Duration
	storeResend    time.Duration
	storeHedge     time.Duration
	memberRate     byteSize
	readTimeout    time.Duration
	readHedge      time.Duration
	faultInjection bool
	maxConns       int
	idleTimeout    time.Duration
	lineTimeout    time.Duration
	writeTimeout   time.Duration
	clientTLSDir   string
	maxInflight    int64
}

func newGatewayCommand() *cobra.Command {
	var f gatewayFlags
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run a gateway node: the HaToKuSe server and the leader",
		Long: `Run a gateway node. It serves HaToKuSe to clients on --client-addr. The
gateways form one Raft group (--gateway-id, --initial-cluster,
--initial-cluster-state, as etcd's): the index is replicated to every
gateway's --data-dir, the gateway that leads replicates every message to
--tolerance members, and any gateway serves clients (it forwards to the
leader). One gateway with none of these flags is a group of one. Members
join with --join <the gateways' --node-addr, comma-separated>.

The tolerance comes from --tolerance (or TOLEREX_TOLERANCE); without it, from
the file named by --tolerance-file holding a line TOLERANCE=N; without that, 2.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tolerance, source, err := resolveTolerance(cmd.Flags().Changed("tolerance"), f.tolerance, f.toleranceFile)
			if err != nil {
				return err
			}
			f.tolerance = tolerance
			if tolerance < 1 || tolerance > leader.MaxTolerance {
				return fmt.Errorf("tolerance %d (from %s) out of range 1..%d", tolerance, source, leader.MaxTolerance)
			}
			return runGateway(cmd.Context(), f, source)
		},
	}
	fs := cmd.Flags()
	f.node.register(fs, "127.0.0.1:7000", "127.0.0.1:8000", "data/gateway")
	fs.StringVar(&f.clientAddr, "client-addr", "127.0.0.1:6666", "host:port of the HaToKuSe client listener")
	fs.IntVar(&f.tolerance, "tolerance", 2, fmt.Sprintf("members that store every message (1..%d)", leader.MaxTolerance))
	fs.StringVar(&f.toleranceFile, "tolerance-file", "tolerance.conf", "file holding TOLERANCE=N, read when --tolerance is not given (a missing file is fine)")
	fs.StringVar(&f.balancer, "balancer", string(selector.LeastLoaded), "replica selection: least_loaded or p2c (power of two choices)")
	fs.BoolVar(&f.noPrompt, "no-prompt", false, "no banner and no \"tolerex> \" prompt: for machine clients")
	fs.DurationVar(&f.storeTimeout, "store-timeout", 2*time.Second, "time a member has to store a copy before another member replaces it")
	fs.DurationVar(&f.storeResend, "store-resend-after", leader.DefaultStoreResendAfter, "time a live member may leave a copy unanswered before the same copy is sent to it once more (its answer may have been lost), plus the time the bytes in flight to it take at --member-rate; 0 turns it off")
	fs.DurationVar(&f.storeHedge, "store-hedge-after", leader.DefaultStoreHedgeAfter, "time a member may leave a copy unanswered before one more member is asked to store it too (once per SET, if a member the SET has not used is live; the first copies stored are indexed, the others pruned), plus the time the bytes in flight to it take at --member-rate; 0 turns it off")
	fs.DurationVar(&f.readTimeout, "read-timeout", time.Second, "time a member has to serve a read before the next replica is tried, plus the time the bytes in flight to that member (the read's own message included) take at --member-rate")
	fs.DurationVar(&f.readHedge, "read-hedge-after", leader.DefaultReadHedgeAfter, "time a member may leave a read unanswered before the next replica is asked too (once per GET; the first good answer is used), plus the time the bytes in flight to it take at --member-rate; 0 turns it off")
	f.memberRate = leader.DefaultMemberRate
	fs.Var(&f.memberRate, "member-rate", "slowest rate a member is expected to store or serve at: a copy gets --store-timeout, a read --read-timeout, plus the time the bytes in flight to its member (its own included) take at this rate, so requests queued behind large messages are not taken for lost; bytes a second, or with KiB, MiB, GiB or TiB")
	fs.IntVar(&f.maxConns, "max-connections", gateway.DefaultMaxConnections, "concurrent HaToKuSe connections; one more is answered \"ERROR: too many connections\" and closed")
	fs.Int64Var(&f.maxInflight, "max-inflight-bytes", gateway.DefaultMaxInflightBytes, "client bytes held at once across all connections (SET messages until answered, GET replies until written); when reached, the gateway stops reading clients until bytes are released; at least --max-message-bytes plus 64")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", gateway.DefaultIdleTimeout, "close a client connection that starts no request for this long")
	fs.DurationVar(&f.lineTimeout, "line-timeout", gateway.DefaultLineTimeout, "close a client connection whose request line is not complete this long after its first byte (slow clients)")
	fs.DurationVar(&f.writeTimeout, "write-timeout", gateway.DefaultWriteTimeout, "close a client connection that does not accept its replies for this long")
	fs.StringVar(&f.clientTLSDir, "client-tls-dir", "", "serve HaToKuSe over TLS with gateway.crt/gateway.key from this directory (clients: tolerex client --tls-ca DIR/ca.crt)")
	fs.BoolVar(&f.faultInjection, "fault-injection", false, "accept POST /debug/fault/leader-panic, /debug/fault/consensus-panic and /debug/fault/membership-panic on the admin port, and make a SET of the message leader.PanicMessage panic the leader mid-batch (crash tests only)")
	fs.DurationVar(&f.requestTimeout, "request-timeout", 10*time.Second, "time a client request may wait for its answer, retries on a new leader after a failover included; a write not answered by then gets \"ERROR: outcome unknown ...\"")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", gateway.DefaultDrainTimeout, "on SIGTERM, time the gateway gives its clients before it stops: it refuses new requests (\"ERROR: gateway unavailable: this gateway is shutting down ...\", so clients with a list of gateways move on), answers the requests it holds, and closes each connection once it is owed nothing and quiet")
	f.raft.register(fs)
	return cmd
}

// resolveTolerance picks the tolerance: the flag when given, else the
// tolerance file when it exists, else the flag's default.
func resolveTolerance(flagGiven bool, flagValue int, file string) (int, string, error) {
	if flagGiven || file == "" {
		return flagValue, "--tolerance", nil
	}
	n, err := readToleranceFile(file)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return flagValue, "default", nil
	case err != nil:
		return 0, "", err
	}
	return n, file, nil
}

// readToleranceFile reads TOLERANCE=N from a file like the original
// Tolerex's tolerance.conf; blank lines and # comments are allowed.
func readToleranceFile(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		key, value, ok := strings.Cut(text, "=")
		if !ok || strings.TrimSpace(key) != "TOLERANCE" {
			return 0, fmt.Errorf("%s:%d: want TOLERANCE=N, got %q", path, line, text)
		}
		n, err := strconv.Atoi(strings.TrimSpace(value))
		if err != nil {
			return 0, fmt.Errorf("%s:%d: TOLERANCE must be a number: %w", path, line, err)
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return 0, fmt.Errorf("%s: no TOLERANCE=N line", path)
}

func runGateway(ctx context.Context, f gatewayFlags, toleranceSource string) error {
	if err := f.node.validate(); err != nil {
		return err
	}
	policy, err := selector.ParsePolicy(f.balancer)
	if err != nil {
		return err
	}
	group, err := f.raft.resolve(f.node.nodeAddr)
	if err != nil {
		return err
	}
	if f.memberRate == 0 {
		return errors.New("--member-rate must be more than 0 bytes a second")
	}
	status := &leader.Status{}
	leaderCfg := leader.Config{
		Tolerance:        f.tolerance,
		Balancer:         policy,
		StoreTimeout:     f.storeTimeout,
		StoreResendAfter: zeroMeansOff(f.storeResend),
		StoreHedgeAfter:  zeroMeansOff(f.storeHedge),
		ReadTimeout:      f.readTimeout,
		ReadHedgeAfter:   zeroMeansOff(f.readHedge),
		MemberRate:       uint64(f.memberRate),
		RequestTimeout:   f.requestTimeout,
		// The leader works on as many SET bytes as this gateway's
		// clients may have in flight, shared with the other gateways'.
		MaxHeldBytes:   f.maxInflight,
		FaultInjection: f.faultInjection,
		Status:         status,
		View:           consensus.NewStateView(),
	}
	if err := leaderCfg.Validate(); err != nil {
		return err
	}
	if f.maxConns < 1 || f.idleTimeout <= 0 || f.lineTimeout <= 0 || f.writeTimeout <= 0 || f.maxInflight < 1 || f.drainTimeout <= 0 {
		return errors.New("--max-connections, --max-inflight-bytes, --drain-timeout and the client timeouts must be positive")
	}
	if longest := int64(f.node.maxMessageBytes) + gateway.LineOverhead; f.maxInflight < longest {
		return fmt.Errorf("--max-inflight-bytes %d is below the longest request line, %d bytes (--max-message-bytes plus %d)",
			f.maxInflight, longest, gateway.LineOverhead)
	}
	raftDir := filepath.Join(f.node.dataDir, "raft")
	clientLis, err := net.Listen("tcp", f.clientAddr)
	if err != nil {
		return fmt.Errorf("HaToKuSe listener: %w", err)
	}
	if f.clientTLSDir != "" {
		cfg, err := certs.LoadServerTLS(f.clientTLSDir, certs.RoleGateway)
		if err != nil {
			clientLis.Close()
			return fmt.Errorf("client TLS: %w", err)
		}
		clientLis = tls.NewListener(clientLis, cfg)
	}
	defer clientLis.Close()
	health := &consensus.Health{}
	var stopping atomic.Bool                     // set on SIGTERM: draining, then stopping
	var membershipProblem atomic.Pointer[string] // set if the membership actor was stopped
	ready := func() error {
		if stopping.Load() {
			return errors.New("shutting down")
		}
		if err := health.NotReady(); err != nil {
			return err
		}
		if p := membershipProblem.Load(); p != nil {
			return errors.New(*p)
		}
		return status.NotReady(f.tolerance)
	}
	node, admin, err := f.node.start(certs.RoleGateway, ready)
	if err != nil {
		return err
	}
	log := node.Logger
	log.Info().Int("tolerance", f.tolerance).Str("tolerance_from", toleranceSource).Str("balancer", string(policy)).
		Str("node", node.Address()).Str("admin", admin.Addr()).Str("client", clientLis.Addr().String()).
		Uint64("gateway_id", group.id).Str("initial_cluster", group.describe()).Str("initial_cluster_state", f.raft.state).Msg("starting gateway")
	if err := migrateMetadataLog(f.node.dataDir, raftDir, group, f.node.sync, log); err != nil {
		return err
	}

	root := node.System.Root
	consensusCfg := consensus.Config{
		ID: group.id, NodeAddress: node.Address(), Peers: group.peers, Join: f.raft.state == "existing",
		Dir: raftDir, Sync: f.node.sync, TickInterval: f.raft.tick, ElectionTicks: f.raft.electionTicks,
		SnapshotEntries: f.raft.snapshotEntries, CatchUpEntries: f.raft.catchUpEntries, MinFreeBytes: uint64(f.raft.minFree),
		View: leaderCfg.View, Health: health, Probe: node.GatewayProbe(),
		Tree:    func() *messages.NodeTree { return node.Tree.Local(node.Address(), string(certs.RoleGateway), "") },
		Metrics: consensus.NewMetrics(node.Registry), Logger: log,
	}
	if err := consensusCfg.Validate(); err != nil {
		return err
	}
	consensusPID, err := root.Copy().WithGuardian(consensus.Strategy(log, health)).
		SpawnNamed(node.Tree.Props("consensus", consensus.New(consensusCfg)), messages.ConsensusActor)
	if err != nil {
		return fmt.Errorf("spawn consensus: %w", err)
	}
	// The membership actor first: the leader tells it whether it leads
	// from its first turn on.
	membershipPID, err := root.Copy().WithGuardian(membership.Strategy(log, func(problem string) { membershipProblem.Store(&problem) })).
		SpawnNamed(node.Tree.Props("membership", membership.New(membership.Config{}, actor.NewPID(node.Address(), messages.LeaderActor), log)), messages.MembershipActor)
	if err != nil {
		return fmt.Errorf("spawn membership: %w", err)
	}
	if err := membership.AnswerAlso(node.System, messages.LegacyMembershipActor, membershipPID); err != nil {
		return err
	}
	leaderCfg.Consensus, leaderCfg.Membership, leaderCfg.Tree, leaderCfg.Logger = consensusPID, membershipPID, node.Tree, log
	leaderCfg.Metrics = leader.NewMetrics(node.Registry, status)
	giveUp := func() {
		// A leader actor stopped for good cannot coordinate: let another
		// gateway lead, now and whenever this one is elected again.
		root.Send(consensusPID, &consensus.StepAside{Reason: "the leader actor was stopped after crashing too often"})
	}
	leaderPID, err := root.Copy().WithGuardian(leader.Strategy(log, status, giveUp)).SpawnNamed(node.Tree.Props("leader", leader.New(leaderCfg)), messages.LeaderActor)
	if err != nil {
		return fmt.Errorf("spawn leader: %w", err)
	}
	gw, err := gateway.New(gateway.Config{
		Listener:         clientLis,
		Leader:           leaderPID,
		Prompt:           !f.noPrompt,
		MaxMessageBytes:  f.node.maxMessageBytes,
		MaxInflightBytes: f.maxInflight,
		MaxConnections:   f.maxConns,
		IdleTimeout:      f.idleTimeout,
		LineTimeout:      f.lineTimeout,
		WriteTimeout:     f.writeTimeout,
		LeaderProblem:    ready,
		Tree:             node.Tree,
		Metrics:          gateway.NewMetrics(node.Registry),
		Logger:           log,
	})
	if err != nil {
		return err
	}
	gatewayPID, err := root.SpawnNamed(node.Tree.Props("gateway", gw), messages.GatewayActor)
	if err != nil {
		return fmt.Errorf("spawn gateway: %w", err)
	}

	api := gatewayAPI{root: root, leader: leaderPID, consensus: consensusPID, self: node.Address(), log: log}
	api.register(admin, node)
	if f.faultInjection {
		log.Warn().Msg("--fault-injection: POST /debug/fault/leader-panic crashes the leader, /debug/fault/consensus-panic the consensus actor, /debug/fault/membership-panic the membership actor")
		admin.HandleFunc("POST /debug/fault/leader-panic", func(w http.ResponseWriter, _ *http.Request) {
			root.Send(leaderPID, &leader.InjectPanic{})
			fmt.Fprintln(w, "leader told to panic")
		})
		admin.HandleFunc("POST /debug/fault/consensus-panic", func(w http.ResponseWriter, _ *http.Request) {
			root.Send(consensusPID, &consensus.InjectPanic{})
			fmt.Fprintln(w, "consensus told to panic")
		})
		admin.HandleFunc("POST /debug/fault/membership-panic", func(w http.ResponseWriter, _ *http.Request) {
			root.Send(membershipPID, &membership.InjectPanic{})
			fmt.Fprintln(w, "membership told to panic")
		})
	}
	beforeStop := func() {
		stopping.Store(true)
		drainGateway(root, gatewayPID, f.drainTimeout, func() { handOffLeadership(root, consensusPID, status, log) }, log)
	}
	serveUntilDone(ctx, node, admin, beforeStop, gatewayPID, leaderPID, membershipPID, consensusPID)
	return nil
}

// drainGateway lets the clients go before the gateway stops (gateway.Drain):
// new requests are refused at once, so clients move to another gateway
// while handOff moves Raft leadership away, and the requests already taken
// are answered (through the next leader if this one led). It returns once
// no client connection is left, or after timeout; the connections still
// open then are closed when the gateway actor stops.
func drainGateway(root *actor.RootContext, gatewayPID *actor.PID, timeout time.Duration, handOff func(), log zerolog.Logger) {
	started := time.Now()
	drained := root.RequestFuture(gatewayPID, &gateway.Drain{}, timeout)
	handOff()
	if _, err := drained.Result(); err != nil {
		log.Warn().Dur("drain_timeout", timeout).Msg("client connections still open at the drain timeout; closing them")
		return
	}
	log.Info().Dur("took", time.Since(started)).Msg("client connections drained before stopping")
}

// handOffLeadership moves Raft leadership to another gateway before this
// one stops, so clients wait for a transfer (well under a second) instead
// of an election.
func handOffLeadership(root *actor.RootContext, consensusPID *actor.PID, status *leader.Status, log zerolog.Logger) {
	if !status.Leading.Load() {
		return
	}
	started := time.Now()
	res, err := root.RequestFuture(consensusPID, &consensus.TransferLeadership{}, time.Second).Result()
	if err == nil {
		err, _ = res.(error)
	}
	if err != nil {
		log.Warn().Err(err).Msg("leadership not handed off before stopping; the others elect a leader")
		return
	}
	deadline := time.Now().Add(2 * time.Second)
	for status.Leading.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	log.Info().Bool("handed_off", !status.Leading.Load()).Dur("took", time.Since(started)).Msg("leadership handed off before stopping")
}

// zeroMeansOff maps --store-resend-after, --store-hedge-after and
// --read-hedge-after to leader.Config, where 0 means the default: the
// flag's 0 (or less) turns the resend or the hedge off.
func zeroMeansOff(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
