package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/tolerex/tolerex/cluster/local"
	"github.com/tolerex/tolerex/gateway"
)

type devFlags struct {
	gateways       int
	members        int
	tolerance      int
	dataDir        string
	clientAddr     string
	host           string
	nodePort       int
	adminPort      int
	balancer       string
	noPrompt       bool
	sync           bool
	faultInjection bool
	logLevel       string
	actorMetrics   bool
	notReadyAfter  time.Duration
	maxMessage     int
	maxProcs       int
}

// defaultDevMaxProcs is the --max-procs a local cluster gives each of its
// processes: half the machine's cores, at least 1. Every process of a
// local cluster shares the machine; when each may run Go code on every
// core, each one's scheduler wakes and spins extra threads for every short
// burst of work, and on a small machine that spinning costs more than it
// saves (measured on 2 cores, SET at 64 connections, runs in turns with
// and without: CPU per SET down by about a sixth on every process, a
// 1-gateway cluster 11% faster and a 3-gateway one 19%; see
// docs/benchmarks.md).
func defaultDevMaxProcs() int { return max(1, runtime.NumCPU()/2) }

func newDevCommand() *cobra.Command {
	var f devFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a whole local cluster (gateways and members) as separate processes",
		Long: `Run a local cluster: certificates are generated under --data-dir/tls, then
--gateways gateway processes (one Raft group) and --members member processes
start, each with its own data dir and log file under --data-dir/logs.
Gateway g (from 1) serves HaToKuSe on --client-addr's port plus g-1 and uses
--node-port and --admin-port plus 100*(g-1); member i uses --node-port and
--admin-port plus i. Clients may use any gateway. A process that dies (say, kill -9 PID) is
restarted with backoff and the restart is reported here, so crash tests can
run against it. A process that is up but stays not ready for
--report-not-ready-after is reported once, with its admin address and the
reason its /readyz gives, and again when it is ready. Ctrl-C stops
everything cleanly; the data stays for the next run (make clean removes it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), f, cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&f.gateways, "gateways", 3, "gateway processes to run, one Raft group (1, 3 or 5; 3 survives the loss of any one)")
	fs.IntVar(&f.members, "members", 3, "member processes to run")
	fs.IntVar(&f.tolerance, "tolerance", 2, "members that store every message")
	fs.StringVar(&f.dataDir, "data-dir", "data/dev", "directory for every process's data, logs and the certificates")
	fs.StringVar(&f.clientAddr, "client-addr", "127.0.0.1:6666", "HaToKuSe listen address of the first gateway; gateway g listens on its port plus g-1")
	fs.StringVar(&f.host, "host", "127.0.0.1", "address the nodes listen on")
	fs.IntVar(&f.nodePort, "node-port", 7000, "first gateway's node port; gateway g gets node-port+100*(g-1), member i node-port+i")
	fs.IntVar(&f.adminPort, "admin-port", 8000, "first gateway's admin port; gateway g gets admin-port+100*(g-1), member i admin-port+i")
	fs.StringVar(&f.balancer, "balancer", "least_loaded", "replica selection: least_loaded or p2c")
	fs.BoolVar(&f.noPrompt, "no-prompt", false, "start the gateways with --no-prompt")
	fs.BoolVar(&f.sync, "sync", true, "fsync before acknowledging (false is unsafe)")
	fs.BoolVar(&f.faultInjection, "fault-injection", true, "start members with --fault-injection (POST /debug/fault/storage-panic, /debug/fault/drop-store-acks and /debug/fault/drop-read-replies)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level of the processes (their logs go to files)")
	fs.BoolVar(&f.actorMetrics, "protoactor-metrics", true, "start the processes with --protoactor-metrics")
	fs.DurationVar(&f.notReadyAfter, "report-not-ready-after", 10*time.Second, "print a line for a process whose /readyz has failed this long (since it started or was last ready), and another when it is ready again")
	fs.IntVar(&f.maxMessage, "max-message-bytes", gateway.DefaultMaxMessageBytes, "largest message a client may store (passed to every process)")
	fs.IntVar(&f.maxProcs, "max-procs", defaultDevMaxProcs(), "each process's --max-procs (cores it runs Go code on at once; 0: every core). The processes share this machine; default half its cores, at least 1")
	return cmd
}

func runDev(ctx context.Context, f devFlags, out io.Writer) error {
	if f.members < 1 || f.members > 99 {
		return errors.New("--members must be 1..99")
	}
	if f.gateways < 1 || f.gateways > 9 {
		return errors.New("--gateways must be 1..9 (1, 3 or 5 make sense: a group of n survives the loss of (n-1)/2)")
	}
	if f.tolerance < 1 || f.tolerance > f.members {
		return fmt.Errorf("--tolerance %d needs 1..%d (the number of members)", f.tolerance, f.members)
	}
	if f.notReadyAfter <= 0 || f.maxMessage < 1 {
		return errors.New("--report-not-ready-after and --max-message-bytes must be positive")
	}
	if f.maxProcs < 0 {
		return fmt.Errorf("--max-procs must be 0 (every core) or more, got %d", f.maxProcs)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	clientHost, clientPortText, err := net.SplitHostPort(f.clientAddr)
	if err != nil {
		return fmt.Errorf("--client-addr %q: %w", f.clientAddr, err)
	}
	clientPort, err := strconv.Atoi(clientPortText)
	if err != nil {
		return fmt.Errorf("--client-addr %q: bad port", f.clientAddr)
	}
	tlsDir := filepath.Join(f.dataDir, "tls")
	var hosts []string
	if f.host != "127.0.0.1" && f.host != "localhost" {
		hosts = append(hosts, f.host)
	}
	generated, err := local.EnsureCerts(tlsDir, hosts)
	if err != nil {
		return err
	}
	if generated {
		fmt.Fprintf(out, "%s generated certificates in %s\n", stamp(), tlsDir)
	}
	logDir := filepath.Join(f.dataDir, "logs")
	common := []string{"--sync=" + strconv.FormatBool(f.sync),
		"--protoactor-metrics=" + strconv.FormatBool(f.actorMetrics), "--max-message-bytes", strconv.Itoa(f.maxMessage),
		"--max-procs", strconv.Itoa(f.maxProcs)}
	cfg := local.Config{
		Binary: exe, Dir: f.dataDir, LogDir: logDir, TLSHosts: hosts,
		Gateways: f.gateways, Members: f.members, Tolerance: f.tolerance, LogLevel: f.logLevel,
		Addrs: local.FixedPorts{Host: f.host, ClientHost: clientHost, ClientPort: clientPort,
			NodePort: f.nodePort, AdminPort: f.adminPort},
		LoneGatewayName: "gateway",
		GatewayArgs:     append([]string{"--balancer", f.balancer, "--no-prompt=" + strconv.FormatBool(f.noPrompt)}, common...),
		MemberArgs:      append([]string{"--fault-injection=" + strconv.FormatBool(f.faultInjection)}, common...),
		// The data dirs of gateway g keep the names earlier releases gave
		// them (gateway2, not gateway-2), so a cluster runs on its old data.
		DataDirs: make(map[string]string),
	}
	if f.gateways > 1 {
		cfg.GatewayGroupArgs = local.RaftGroup
		for g := 1; g <= f.gateways; g++ {
			cfg.DataDirs[fmt.Sprintf("gateway-%d", g)] = filepath.Join(f.dataDir, fmt.Sprintf("gateway%d", g))
		}
	}
	c, err := local.New(cfg)
	if err != nil {
		return err
	}
	if err := checkPortsFree(c.ListenAddrs()); err != nil {
		return err
	}
	var lines sync.Mutex // one line at a time
	sup := local.Supervisor{
		StopGrace:     devStopGrace,
		NotReadyAfter: f.notReadyAfter,
		ReadyPoll:     devReadyPoll,
		ReadyTimeout:  devReadyTimeout,
		Report: func(e local.Event) {
			lines.Lock()
			defer lines.Unlock()
			fmt.Fprintf(out, "%s %s\n", stamp(), devEventLine(e, devStopGrace))
		},
	}
	stopped := make(chan struct{})
	go func() {
		c.Supervise(ctx, sup)
		close(stopped)
	}()
	gw, member := c.Gateways[0], c.Members[0]
	fmt.Fprintf(out, "\nTolerex dev cluster: %d gateway(s), %d members, tolerance %d, data in %s\n", f.gateways, f.members, f.tolerance, f.dataDir)
	cwd, _ := os.Getwd() // "" on error: the hints then show os.Args[0] as is
	self := invocationName(os.Args[0], cwd)
	fmt.Fprintf(out, "  connect:  %s client --addr %s    (or: nc %s)\n", self, strings.Join(c.ClientAddrs(), ","), spaceHostPort(f.clientAddr))
	if f.gateways > 1 {
		fmt.Fprintf(out, "            any gateway serves clients; the client moves to the next when its gateway dies\n")
		fmt.Fprintf(out, "  raft:     curl http://%s/api/raft    (who leads; kill -9 its pid and watch another take over)\n", gw.AdminAddr)
	}
	fmt.Fprintf(out, "  tree:     %s tree --admin-addr %s --watch\n", self, gw.AdminAddr)
	fmt.Fprintf(out, "  cluster:  curl http://%s/api/cluster\n", gw.AdminAddr)
	fmt.Fprintf(out, "  logs:     %s\n", filepath.Join(logDir, "<process>.log"))
	if f.faultInjection {
		fmt.Fprintf(out, "  crash a storage actor:  curl -X POST http://%s/debug/fault/storage-panic\n", member.AdminAddr)
	}
	fmt.Fprintf(out, "  Ctrl-C stops everything.\n\n")
	// Ready: every process's /readyz answers 200 and the leading gateway
	// sees every member, so the first write succeeds.
	if err := c.WaitHealthy(ctx, devReadyLimit); err == nil {
		fmt.Fprintf(out, "%s cluster ready\n", stamp())
	} else if ctx.Err() == nil {
		// The wait's error wraps the health check's last reason.
		fmt.Fprintf(out, "%s cluster not ready after %s: %v; see the logs in %s\n", stamp(), devReadyLimit, errors.Unwrap(err), logDir)
	}
	<-stopped
	fmt.Fprintf(out, "%s all processes stopped\n", stamp())
	return nil
}

// checkPortsFree fails if an address is taken, before anything starts:
// otherwise the processes would fail and be restarted over and over.
func checkPortsFree(addrs []string) error {
	for _, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s is not free (another cluster running? use --client-addr, --node-port and --admin-port): %w", addr, err)
		}
		l.Close()
	}
	return nil
}

// invocationName is what the user types to run this binary again, for
// the hints dev prints: the name as typed when it was found on PATH
// ("tolerex"), else its path relative to the working directory when that
// stays below it ("bin/tolerex", "./tolerex"), else its absolute path.
func invocationName(arg0, cwd string) string {
	if !strings.ContainsRune(arg0, filepath.Separator) {
		return arg0
	}
	if cwd == "" {
		return arg0
	}
	abs := arg0
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(cwd, abs)
	}
	rel, err := filepath.Rel(cwd, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return abs
	}
	if !strings.ContainsRune(rel, filepath.Separator) {
		rel = "." + string(filepath.Separator) + rel // not on PATH: "./tolerex"
	}
	return rel
}

func spaceHostPort(hostPort string) string {
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return hostPort
	}
	return host + " " + port
}

func stamp() string { return time.Now().Format(time.TimeOnly) }
