package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tolerex/tolerex/cluster/certs"
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
}

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
	fs.BoolVar(&f.faultInjection, "fault-injection", true, "start members with --fault-injection (POST /debug/fault/storage-panic)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level of the processes (their logs go to files)")
	fs.BoolVar(&f.actorMetrics, "protoactor-metrics", true, "start the processes with --protoactor-metrics")
	fs.DurationVar(&f.notReadyAfter, "report-not-ready-after", 10*time.Second, "print a line for a process whose /readyz has failed this long (since it started or was last ready), and another when it is ready again")
	fs.IntVar(&f.maxMessage, "max-message-bytes", gateway.DefaultMaxMessageBytes, "largest message a client may store (passed to every process)")
	return cmd
}

// devProcess is one supervised child process of the dev cluster.
type devProcess struct {
	name      string
	args      []string
	logPath   string
	nodeAddr  string
	adminAddr string
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
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	tlsDir := filepath.Join(f.dataDir, "tls")
	if err := ensureCerts(tlsDir, f.host, out); err != nil {
		return err
	}
	logDir := filepath.Join(f.dataDir, "logs")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return fmt.Errorf("create log dir: %w", err)
	}
	addr := func(port int) string { return net.JoinHostPort(f.host, strconv.Itoa(port)) }
	common := []string{"--tls-dir", tlsDir, "--log-level", f.logLevel, "--sync=" + strconv.FormatBool(f.sync),
		"--protoactor-metrics=" + strconv.FormatBool(f.actorMetrics), "--max-message-bytes", strconv.Itoa(f.maxMessage)}
	host, clientPortText, err := net.SplitHostPort(f.clientAddr)
	if err != nil {
		return fmt.Errorf("--client-addr %q: %w", f.clientAddr, err)
	}
	clientPort, err := strconv.Atoi(clientPortText)
	if err != nil {
		return fmt.Errorf("--client-addr %q: bad port", f.clientAddr)
	}
	var gateways []devProcess
	var clientAddrs, initial, join []string
	for g := 1; g <= f.gateways; g++ {
		gw := devProcess{
			name:      "gateway",
			nodeAddr:  addr(f.nodePort + 100*(g-1)),
			adminAddr: addr(f.adminPort + 100*(g-1)),
			logPath:   filepath.Join(logDir, "gateway.log"),
		}
		if f.gateways > 1 {
			gw.name = fmt.Sprintf("gateway-%d", g)
			gw.logPath = filepath.Join(logDir, gw.name+".log")
		}
		clientAddrs = append(clientAddrs, net.JoinHostPort(host, strconv.Itoa(clientPort+g-1)))
		initial = append(initial, fmt.Sprintf("%d=%s", g, gw.nodeAddr))
		join = append(join, gw.nodeAddr)
		gateways = append(gateways, gw)
	}
	for g := range gateways {
		gw := &gateways[g]
		gw.args = append([]string{"gateway",
			"--client-addr", clientAddrs[g], "--node-addr", gw.nodeAddr, "--admin-addr", gw.adminAddr,
			"--data-dir", filepath.Join(f.dataDir, strings.Replace(gw.name, "gateway-", "gateway", 1)),
			"--tolerance", strconv.Itoa(f.tolerance), "--balancer", f.balancer,
			"--no-prompt=" + strconv.FormatBool(f.noPrompt)}, common...)
		if f.gateways > 1 {
			gw.args = append(gw.args, "--gateway-id", strconv.Itoa(g+1), "--initial-cluster", strings.Join(initial, ","))
		}
	}
	procs := append([]devProcess(nil), gateways...)
	for i := 1; i <= f.members; i++ {
		m := devProcess{
			name:      fmt.Sprintf("member-%d", i),
			nodeAddr:  addr(f.nodePort + i),
			adminAddr: addr(f.adminPort + i),
			logPath:   filepath.Join(logDir, fmt.Sprintf("member-%d.log", i)),
		}
		m.args = append([]string{"member",
			"--node-addr", m.nodeAddr, "--admin-addr", m.adminAddr, "--join", strings.Join(join, ","),
			"--data-dir", filepath.Join(f.dataDir, m.name),
			"--fault-injection=" + strconv.FormatBool(f.faultInjection)}, common...)
		procs = append(procs, m)
	}

	if err := checkPortsFree(append(clientAddrs, allAddrs(procs)...)); err != nil {
		return err
	}
	sup := &devSupervisor{exe: exe, notReadyAfter: f.notReadyAfter, out: out}
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sup.run(ctx, p)
		}()
	}
	fmt.Fprintf(out, "\nTolerex dev cluster: %d gateway(s), %d members, tolerance %d, data in %s\n", f.gateways, f.members, f.tolerance, f.dataDir)
	cwd, _ := os.Getwd() // "" on error: the hints then show os.Args[0] as is
	self := invocationName(os.Args[0], cwd)
	fmt.Fprintf(out, "  connect:  %s client --addr %s    (or: nc %s)\n", self, strings.Join(clientAddrs, ","), spaceHostPort(f.clientAddr))
	if f.gateways > 1 {
		fmt.Fprintf(out, "            any gateway serves clients; the client moves to the next when its gateway dies\n")
		fmt.Fprintf(out, "  raft:     curl http://%s/api/raft    (who leads; kill -9 its pid and watch another take over)\n", gateways[0].adminAddr)
	}
	fmt.Fprintf(out, "  tree:     %s tree --admin-addr %s --watch\n", self, gateways[0].adminAddr)
	fmt.Fprintf(out, "  cluster:  curl http://%s/api/cluster\n", gateways[0].adminAddr)
	fmt.Fprintf(out, "  logs:     %s\n", filepath.Join(logDir, "<process>.log"))
	if f.faultInjection {
		fmt.Fprintf(out, "  crash a storage actor:  curl -X POST http://%s/debug/fault/storage-panic\n", procs[f.gateways].adminAddr)
	}
	fmt.Fprintf(out, "  Ctrl-C stops everything.\n\n")
	if waitReady(ctx, procs, f.gateways, 30*time.Second) {
		fmt.Fprintf(out, "%s cluster ready\n", stamp())
	} else if ctx.Err() == nil {
		fmt.Fprintf(out, "%s cluster not ready after 30s; see the logs in %s\n", stamp(), logDir)
	}
	wg.Wait()
	fmt.Fprintf(out, "%s all processes stopped\n", stamp())
	return nil
}

// allAddrs lists every address the processes listen on.
func allAddrs(procs []devProcess) []string {
	var addrs []string
	for _, p := range procs {
		addrs = append(addrs, p.nodeAddr, p.adminAddr)
	}
	return addrs
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

// ensureCerts generates the dev cluster's certificates unless they exist.
func ensureCerts(dir, host string, out io.Writer) error {
	if _, err := os.Stat(filepath.Join(dir, certs.CACertFile)); err == nil {
		return nil
	}
	var hosts []string
	if host != "127.0.0.1" && host != "localhost" {
		hosts = append(hosts, host)
	}
	if _, err := certs.Generate(dir, certs.GenerateOptions{Hosts: hosts}); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s holds some certificate files but not %s; remove it or complete it: %w", dir, certs.CACertFile, err)
		}
		return err
	}
	fmt.Fprintf(out, "%s generated certificates in %s\n", stamp(), dir)
	return nil
}

// waitReady polls every process's /readyz until all answer 200 and the
// leading gateway (one of the first gateways procs) sees every member.
func waitReady(ctx context.Context, procs []devProcess, gateways int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		ready := 0
		for _, p := range procs {
			resp, err := client.Get("http://" + p.adminAddr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ready++
				}
			}
		}
		live := -1
		for _, g := range procs[:gateways] {
			live = max(live, liveMembers(client, g.adminAddr))
		}
		if ready == len(procs) && live == len(procs)-gateways {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
	return false
}

// liveMembers asks a gateway how many members it sees live, or -1 (only
// the gateway that leads keeps track of members).
func liveMembers(client *http.Client, adminAddr string) int {
	resp, err := client.Get("http://" + adminAddr + "/api/cluster")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var st struct {
		LiveMembers int `json:"live_members"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return -1
	}
	return st.LiveMembers
}

// devSupervisor restarts dev processes that die, with backoff, and
// reports a process that stays not ready for notReadyAfter.
type devSupervisor struct {
	exe           string
	notReadyAfter time.Duration
	mu            sync.Mutex // serializes output lines
	out           io.Writer
}

func (s *devSupervisor) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, stamp()+" "+format+"\n", args...)
}

// Restart backoff: it doubles from devMinBackoff to devMaxBackoff and
// resets once a process stayed up for devStableAfter.
const (
	devMinBackoff  = 500 * time.Millisecond
	devMaxBackoff  = 10 * time.Second
	devStableAfter = 30 * time.Second
	devStopGrace   = 10 * time.Second
)

func (s *devSupervisor) run(ctx context.Context, p devProcess) {
	backoff := devMinBackoff
	ready := &readinessWatch{name: p.name, adminAddr: p.adminAddr, after: s.notReadyAfter}
	for restarts := 0; ; restarts++ {
		started := time.Now()
		err := s.runOnce(ctx, p, ready, restarts)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > devStableAfter {
			backoff = devMinBackoff
		}
		s.printf("%s exited (%v); restarting in %s", p.name, err, backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, devMaxBackoff)
	}
}

// runOnce runs the process until it exits or ctx ends; on ctx end it asks
// the process to stop (SIGTERM) and kills it after a grace period.
func (s *devSupervisor) runOnce(ctx context.Context, p devProcess, ready *readinessWatch, restarts int) error {
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(s.exe, p.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Die with the dev command even if it is killed itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	verb := "started"
	if restarts > 0 {
		verb = fmt.Sprintf("restarted (restart #%d)", restarts)
	}
	s.printf("%-9s %s pid=%d node=%s admin=%s log=%s", p.name, verb, cmd.Process.Pid, p.nodeAddr, p.adminAddr, p.logPath)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go s.watchReady(watchCtx, ready)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			s.printf("%s stopped", p.name)
			return err
		case <-time.After(devStopGrace):
			_ = cmd.Process.Kill()
			s.printf("%s did not stop within %s; killed", p.name, devStopGrace)
			return <-done
		}
	}
}
