// Package e2e holds the end-to-end tests of Tolerex and the harness they
// share: it builds the real tolerex binary once, starts gateways and
// members as separate OS processes on 127.0.0.1 with freshly generated
// certificates, kills them with SIGKILL, restarts them on the same data
// dirs, and talks to them over HaToKuSe and their admin HTTP APIs. The
// processes are launched by cluster/local, the launcher tolerex dev and
// the fault suite use too; the harness fails the test where the launcher
// returns an error, and cleans up when the test ends.
package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tolerex/tolerex/actors/leader"
	"github.com/tolerex/tolerex/actors/tree"
	"github.com/tolerex/tolerex/cluster/local"
	"github.com/tolerex/tolerex/cluster/local/poll"
	"github.com/tolerex/tolerex/gateway/client"
)

// BuildBinary builds cmd/tolerex into dir and returns its path.
func BuildBinary(dir string) (string, error) {
	bin := filepath.Join(dir, "tolerex")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/tolerex/tolerex/cmd/tolerex")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}

// ports is the one port picker of the e2e tests: every cluster, FreeAddr
// and FreePortBlock take their ports from it, so no port is handed out
// twice in a run, and all lie below Linux's ephemeral range, so the
// outgoing connections of other tests cannot take one between its pick
// and the moment a process listens on it.
var ports = local.NewPortPicker()

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := ports.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// Process is one tolerex process (gateway or member) of a test cluster: a
// local.Node whose methods fail the test instead of returning errors. Its
// fields are copies of the node's; Args is what the next Start runs, and a
// test may change it before that Start.
type Process struct {
	Name      string
	Bin       string
	Args      []string
	NodeAddr  string
	AdminAddr string
	DataDir   string
	LogPath   string

	node *local.Node
}

// newProcess wraps a node of the launcher.
func newProcess(bin string, n *local.Node) *Process {
	return &Process{Name: n.Name, Bin: bin, Args: n.Args(), NodeAddr: n.NodeAddr, AdminAddr: n.AdminAddr,
		DataDir: n.DataDir, LogPath: n.LogPath, node: n}
}

// Start starts the process with Args; its stdout and stderr are appended
// to LogPath.
func (p *Process) Start(t testing.TB) {
	t.Helper()
	p.node.SetArgs(p.Args)
	if err := p.node.Start(); err != nil {
		t.Fatal(err)
	}
}

// Pid is the running process's pid, or 0.
func (p *Process) Pid() int { return p.node.Pid() }

// Running reports whether the process was started and has not ended.
func (p *Process) Running() bool { return p.node.Running() }

// Kill sends SIGKILL and waits for the process to die.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	if err := p.node.Kill(); err != nil {
		t.Error(err)
	}
}

// Stop sends SIGTERM and waits for a clean exit; it fails the test if the
// process does not exit in time or exits with an error.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	if err := p.node.Stop(15 * time.Second); err != nil {
		t.Errorf("%s did not stop cleanly: %v\n%s", p.Name, err, p.LogTail(2000))
	}
}

// Exited reports whether the process has exited by itself (not by Kill or
// Stop), and its exit error.
func (p *Process) Exited() (exited bool, err error) { return p.node.Exited() }

// LogTail returns the last n bytes of the process's log.
func (p *Process) LogTail(n int) string { return p.node.LogTail(n) }

// Log returns the process's whole log.
func (p *Process) Log() string { return p.node.Log() }

// Pause stops the process with SIGSTOP: it stays alive but runs nothing,
// as a process does in a long GC pause or a frozen VM.
func (p *Process) Pause(t testing.TB) {
	t.Helper()
	if err := p.node.Pause(); err != nil {
		t.Fatal(err)
	}
}

// Resume continues a paused process with SIGCONT.
func (p *Process) Resume(t testing.TB) {
	t.Helper()
	if err := p.node.Resume(); err != nil {
		t.Fatal(err)
	}
}

// pollInterval is how often Eventually checks its condition.
const pollInterval = 20 * time.Millisecond

// Eventually polls cond until it reports done, and fails the test with
// cond's last status if that takes longer than limit. It is the one way
// these tests wait for something to happen (on poll.Until, the launcher's
// helper). cond may fail the test itself (say, when a process it waits for
// exited).
func Eventually(t testing.TB, limit time.Duration, what string, cond func() (done bool, status string)) {
	t.Helper()
	poll.Eventually(t, limit, pollInterval, what, cond)
}

// Ready reports whether the process's /readyz answers 200.
func (p *Process) Ready() bool {
	ready, _ := p.node.Ready(context.Background())
	return ready
}

// WaitReady waits until /readyz answers 200; it fails the test at once if
// the process exits.
func (p *Process) WaitReady(t testing.TB, limit time.Duration) {
	t.Helper()
	if err := p.node.WaitReady(context.Background(), limit); err != nil {
		t.Fatalf("%v\n%s", err, p.LogTail(4000))
	}
}

// GetJSON fetches path from the admin server into v.
func (p *Process) GetJSON(t testing.TB, path string, v any) {
	t.Helper()
	if err := p.node.GetJSON(context.Background(), path, v); err != nil {
		t.Fatal(err)
	}
}

// Get fetches path from the admin server.
func (p *Process) Get(t testing.TB, path string) ([]byte, int) {
	t.Helper()
	body, status, err := p.node.Get(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return body, status
}

// Post posts to path on the admin server and returns the status code.
func (p *Process) Post(t testing.TB, path string) int {
	t.Helper()
	status, err := p.node.Post(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return status
}

// adminTimeout bounds one admin request of the tests.
const adminTimeout = 5 * time.Second

var httpClient = &http.Client{Timeout: adminTimeout}

// Options configure a test cluster.
type Options struct {
	Members   int
	Tolerance int
	// NoPrompt starts the gateway with --no-prompt.
	NoPrompt bool
	// Insecure runs without TLS.
	Insecure bool
	// FaultInjection starts members with --fault-injection.
	FaultInjection bool
	// GatewayArgs and MemberArgs are appended to each process's flags.
	GatewayArgs []string
	MemberArgs  []string
}

// Cluster is a gateway and its members, each a real process, launched by
// cluster/local.
type Cluster struct {
	Bin        string
	Dir        string
	TLSDir     string
	ClientAddr string
	Gateway    *Process
	Members    []*Process
	nodes      *local.Cluster
}

// NewCluster prepares (but does not start) a cluster in a fresh temp dir
// with generated certificates; the test's end kills it.
func NewCluster(t testing.TB, bin string, opts Options) *Cluster {
	t.Helper()
	if opts.Tolerance == 0 {
		opts.Tolerance = 2
	}
	var memberArgs []string
	if opts.FaultInjection {
		memberArgs = append(memberArgs, "--fault-injection")
	}
	dir := t.TempDir()
	nodes, err := local.New(local.Config{
		Binary: bin, Dir: dir, Gateways: 1, Members: opts.Members, Tolerance: opts.Tolerance,
		Insecure: opts.Insecure, NoPrompt: opts.NoPrompt, LogLevel: "debug",
		GatewayArgs: opts.GatewayArgs, MemberArgs: append(memberArgs, opts.MemberArgs...),
		Addrs: ports, LoneGatewayName: "gateway", HTTPTimeout: adminTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	gw := nodes.Gateways[0]
	c := &Cluster{Bin: bin, Dir: dir, TLSDir: nodes.TLSDir, ClientAddr: gw.ClientAddr,
		Gateway: newProcess(bin, gw), nodes: nodes}
	for _, m := range nodes.Members {
		c.Members = append(c.Members, newProcess(bin, m))
	}
	t.Cleanup(func() { c.KillAll(t) })
	return c
}

// AddMember prepares one more member (not started).
func (c *Cluster) AddMember(t testing.TB) *Process {
	t.Helper()
	n, err := c.nodes.AddMember()
	if err != nil {
		t.Fatal(err)
	}
	m := newProcess(c.Bin, n)
	c.Members = append(c.Members, m)
	return m
}

// Start starts the gateway and every member and waits until all are ready.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	c.Gateway.Start(t)
	for _, m := range c.Members {
		m.Start(t)
	}
	c.Gateway.WaitReady(t, 20*time.Second)
	for _, m := range c.Members {
		m.WaitReady(t, 20*time.Second)
	}
	c.WaitLive(t, len(c.Members), 20*time.Second)
}

// KillAll SIGKILLs every process still running.
func (c *Cluster) KillAll(t testing.TB) {
	for _, m := range c.Members {
		m.Kill(t)
	}
	c.Gateway.Kill(t)
}

// Status returns the gateway's /api/cluster.
func (c *Cluster) Status(t testing.TB) leader.ClusterStatus {
	t.Helper()
	var st leader.ClusterStatus
	c.Gateway.GetJSON(t, "/api/cluster", &st)
	return st
}

// Tree returns the gateway's /api/tree.
func (c *Cluster) Tree(t testing.TB) tree.ClusterView {
	t.Helper()
	var v tree.ClusterView
	c.Gateway.GetJSON(t, "/api/tree", &v)
	return v
}

// WaitLive waits until the gateway sees exactly n live members.
func (c *Cluster) WaitLive(t testing.TB, n int, limit time.Duration) {
	t.Helper()
	var st leader.ClusterStatus
	err := poll.Until(context.Background(), limit, 50*time.Millisecond, "live members", func() (bool, error) {
		st = c.Status(t)
		return st.LiveCount == n, nil
	})
	if err != nil {
		t.Fatalf("gateway sees %d live members, want %d (after %s): %+v\n%s", st.LiveCount, n, limit, st.Members, c.Gateway.LogTail(3000))
	}
}

// WaitOnlyLive waits until the members the gateway can use (alive, with
// their storage ready) are exactly live. A count alone is not enough after
// a kill: the gateway may still count a killed member whose connection
// loss it has not seen yet while a survivor is briefly not ready.
func (c *Cluster) WaitOnlyLive(t testing.TB, limit time.Duration, live ...*Process) {
	t.Helper()
	want := make(map[string]bool, len(live))
	for _, p := range live {
		want[p.NodeAddr] = true
	}
	var st leader.ClusterStatus
	err := poll.Until(context.Background(), limit, 50*time.Millisecond, "live members", func() (bool, error) {
		st = c.Status(t)
		for _, m := range st.Members {
			if (m.Alive && m.StorageReady) != want[m.NodeAddress] {
				return false, nil
			}
		}
		return st.LiveCount == len(live), nil
	})
	if err != nil {
		t.Fatalf("gateway's live members are not exactly %d given (after %s): %+v\n%s", len(live), limit, st.Members, c.Gateway.LogTail(3000))
	}
}

// Dial connects a HaToKuSe client to the gateway.
func (c *Cluster) Dial(t testing.TB) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, c.ClientAddr, client.Options{DialTimeout: 5 * time.Second, IOTimeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("dial gateway: %v\n%s", err, c.Gateway.LogTail(3000))
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// DumpLogsOnFailure prints every process's log tail if the test failed,
// and copies the whole logs into $TOLEREX_E2E_LOGS/<test name>/ when that
// variable names a directory.
func (c *Cluster) DumpLogsOnFailure(t testing.TB) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		keep := os.Getenv("TOLEREX_E2E_LOGS")
		for _, p := range append([]*Process{c.Gateway}, c.Members...) {
			t.Logf("---- %s log tail ----\n%s", p.Name, p.LogTail(6000))
			if keep == "" {
				continue
			}
			dir := filepath.Join(keep, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
			if err := os.MkdirAll(dir, 0o755); err == nil {
				_ = os.WriteFile(filepath.Join(dir, p.Name+".log"), []byte(p.Log()), 0o644)
			}
		}
	})
}
