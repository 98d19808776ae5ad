// Package e2e holds the end-to-end tests of Tolerex and the harness they
// share: it builds the real tolerex binary once, starts gateways and
// members as separate OS processes on 127.0.0.1 with freshly generated
// certificates, kills them with SIGKILL, restarts them on the same data
// dirs, and talks to them over HaToKuSe and their admin HTTP APIs.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tolerex/tolerex/actors/leader"
	"github.com/tolerex/tolerex/actors/tree"
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

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// handedOut remembers the ports freeAddr returned, so one cluster's
// processes never get the same port: a port is only bound once its process
// starts, and two random picks among 12,000 ports for a cluster of eight
// collided in about one suite run in ten.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: make(map[int]bool)}

// freeAddr picks a free port below Linux's ephemeral range (32768 and up),
// so the outgoing connections of other tests cannot take it between now
// and the moment a process listens on it, and never the same port twice.
func freeAddr() (string, error) {
	const low, high = 20000, 32000
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 200 {
		port := low + rand.IntN(high-low)
		if handedOut.ports[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err == nil {
			l.Close()
			handedOut.ports[port] = true
			return addr, nil
		}
	}
	return "", errors.New("no free port found")
}

// Process is one tolerex process (gateway or member) of a test cluster.
type Process struct {
	Name      string
	Bin       string
	Args      []string
	NodeAddr  string
	AdminAddr string
	DataDir   string
	LogPath   string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan error
}

// Start starts the process; its stdout and stderr are appended to LogPath.
func (p *Process) Start(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		t.Fatalf("%s is already running", p.Name)
	}
	logFile, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("open log of %s: %v", p.Name, err)
	}
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start %s: %v", p.Name, err)
	}
	done := make(chan error, 1)
	go func() {
		done <- cmd.Wait()
		logFile.Close()
	}()
	p.cmd, p.done = cmd, done
}

// Pid is the running process's pid, or 0.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the process was started and has not been
// waited for.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Kill sends SIGKILL and waits for the process to die.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	p.signalAndWait(t, syscall.SIGKILL, 10*time.Second)
}

// Stop sends SIGTERM and waits for a clean exit; it fails the test if the
// process does not exit in time or exits with an error.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	if err := p.signalAndWait(t, syscall.SIGTERM, 15*time.Second); err != nil {
		t.Errorf("%s did not stop cleanly: %v\n%s", p.Name, err, p.LogTail(2000))
	}
}

func (p *Process) signalAndWait(t testing.TB, sig syscall.Signal, limit time.Duration) error {
	t.Helper()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd, p.done = nil, nil
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case err := <-done:
		if sig == syscall.SIGKILL {
			return nil
		}
		return err
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		<-done
		t.Errorf("%s did not exit within %s of %v", p.Name, limit, sig)
		return errors.New("timeout")
	}
}

// Exited returns the process's exit error if it has exited by itself.
func (p *Process) Exited() (exited bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return false, nil
	}
	select {
	case err := <-p.done:
		p.cmd, p.done = nil, nil
		return true, err
	default:
		return false, nil
	}
}

// LogTail returns the last n bytes of the process's log.
func (p *Process) LogTail(n int) string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

// Log returns the process's whole log.
func (p *Process) Log() string {
	data, _ := os.ReadFile(p.LogPath)
	return string(data)
}

// Pause stops the process with SIGSTOP: it stays alive but runs nothing,
// as a process does in a long GC pause or a frozen VM.
func (p *Process) Pause(t testing.TB) { p.signal(t, syscall.SIGSTOP) }

// Resume continues a paused process with SIGCONT.
func (p *Process) Resume(t testing.TB) { p.signal(t, syscall.SIGCONT) }

func (p *Process) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		t.Fatalf("%s is not running; cannot send %v", p.Name, sig)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("send %v to %s: %v", sig, p.Name, err)
	}
}

// pollInterval is how often Eventually checks its condition.
const pollInterval = 20 * time.Millisecond

// Eventually polls cond until it reports done, and fails the test with
// cond's last status if that takes longer than limit. It is the one way
// these tests wait for something to happen. cond may fail the test itself
// (say, when a process it waits for exited).
func Eventually(t testing.TB, limit time.Duration, what string, cond func() (done bool, status string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		done, status := cond()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done after %s: %s", what, limit, status)
		}
		time.Sleep(pollInterval)
	}
}

// Ready reports whether the process's /readyz answers 200.
func (p *Process) Ready() bool {
	resp, err := httpClient.Get("http://" + p.AdminAddr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// WaitReady waits until /readyz answers 200.
func (p *Process) WaitReady(t testing.TB, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !p.Ready() {
		if exited, err := p.Exited(); exited {
			t.Fatalf("%s exited while starting: %v\n%s", p.Name, err, p.LogTail(4000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s\n%s", p.Name, limit, p.LogTail(4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// GetJSON fetches path from the admin server into v.
func (p *Process) GetJSON(t testing.TB, path string, v any) {
	t.Helper()
	body, status := p.Get(t, path)
	if status != http.StatusOK {
		t.Fatalf("GET %s on %s: %d %s", path, p.Name, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %s from %s: %v\n%s", path, p.Name, err, body)
	}
}

// Get fetches path from the admin server.
func (p *Process) Get(t testing.TB, path string) ([]byte, int) {
	t.Helper()
	resp, err := httpClient.Get("http://" + p.AdminAddr + path)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", path, p.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s from %s: %v", path, p.Name, err)
	}
	return body, resp.StatusCode
}

// Post posts to path on the admin server and returns the status code.
func (p *Process) Post(t testing.TB, path string) int {
	t.Helper()
	resp, err := httpClient.Post("http://"+p.AdminAddr+path, "text/plain", bytes.NewReader(nil))
	if err != nil {
		t.Fatalf("POST %s on %s: %v", path, p.Name, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

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

// Cluster is a gateway and its members, each a real process.
type Cluster struct {
	Bin        string
	Dir        string
	TLSDir     string
	ClientAddr string
	Gateway    *Process
	Members    []*Process
	opts       Options
}

// NewCluster prepares (but does not start) a cluster in a fresh temp dir
// with generated certificates.
func NewCluster(t testing.TB, bin string, opts Options) *Cluster {
	t.Helper()
	if opts.Tolerance == 0 {
		opts.Tolerance = 2
	}
	dir := t.TempDir()
	c := &Cluster{Bin: bin, Dir: dir, TLSDir: filepath.Join(dir, "tls"), ClientAddr: FreeAddr(t), opts: opts}
	if !opts.Insecure {
		if out, err := exec.Command(bin, "certs", "--dir", c.TLSDir).CombinedOutput(); err != nil {
			t.Fatalf("tolerex certs: %v\n%s", err, out)
		}
	}
	gwArgs := []string{"gateway", "--client-addr", c.ClientAddr, "--tolerance", strconv.Itoa(opts.Tolerance),
		"--log-level", "debug"}
	if opts.NoPrompt {
		gwArgs = append(gwArgs, "--no-prompt")
	}
	c.Gateway = c.newProcess("gateway", gwArgs, opts.GatewayArgs)
	for i := 1; i <= opts.Members; i++ {
		c.AddMember(t)
	}
	t.Cleanup(func() { c.KillAll(t) })
	return c
}

func (c *Cluster) newProcess(name string, args, extra []string) *Process {
	p := &Process{
		Name:     name,
		Bin:      c.Bin,
		NodeAddr: "", // set below
		DataDir:  filepath.Join(c.Dir, name),
		LogPath:  filepath.Join(c.Dir, name+".log"),
	}
	return p.withAddrs(c, args, extra)
}

func (p *Process) withAddrs(c *Cluster, args, extra []string) *Process {
	p.NodeAddr, p.AdminAddr = freeAddrNoTB(), freeAddrNoTB()
	p.Args = append(append(args, "--node-addr", p.NodeAddr, "--admin-addr", p.AdminAddr, "--data-dir", p.DataDir), c.securityArgs()...)
	p.Args = append(p.Args, extra...)
	return p
}

func freeAddrNoTB() string {
	addr, err := freeAddr()
	if err != nil {
		panic(err)
	}
	return addr
}

func (c *Cluster) securityArgs() []string {
	if c.opts.Insecure {
		return []string{"--insecure"}
	}
	return []string{"--tls-dir", c.TLSDir}
}

// AddMember prepares one more member (not started).
func (c *Cluster) AddMember(t testing.TB) *Process {
	t.Helper()
	name := fmt.Sprintf("member-%d", len(c.Members)+1)
	args := []string{"member", "--join", c.Gateway.NodeAddr, "--log-level", "debug"}
	if c.opts.FaultInjection {
		args = append(args, "--fault-injection")
	}
	m := c.newProcess(name, args, c.opts.MemberArgs)
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
	deadline := time.Now().Add(limit)
	for {
		st := c.Status(t)
		if st.LiveCount == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway sees %d live members, want %d (after %s): %+v\n%s", st.LiveCount, n, limit, st.Members, c.Gateway.LogTail(3000))
		}
		time.Sleep(50 * time.Millisecond)
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
