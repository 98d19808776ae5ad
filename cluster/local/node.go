package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tolerex/tolerex/cluster/local/poll"
)

// Role is what a node does.
type Role string

// The roles of the nodes.
const (
	Gateway Role = "gateway"
	Member  Role = "member"
)

// ErrStillRunning is wrapped by Stop's error when the process did not exit
// within its limit after SIGTERM and was killed.
var ErrStillRunning = errors.New("still running after SIGTERM; killed")

// killWait bounds the wait for a process to be gone after SIGKILL.
const killWait = 10 * time.Second

// adminBodyLimit bounds what is read of one admin API answer.
const adminBodyLimit = 64 << 20

// DefaultHTTPTimeout bounds one admin API request of a node whose HTTP
// client is not set.
const DefaultHTTPTimeout = 2 * time.Second

// Node is one process of the cluster: it keeps its name, addresses, data
// dir, log and group id across restarts. A Node value made by hand with
// only Name and AdminAddr (a process started elsewhere) can still use the
// admin API methods (Ready, Get, GetJSON, Post).
type Node struct {
	Name string
	Role Role
	// Index counts nodes of one role from 0.
	Index int
	// GID is the group id the process runs with (0: the launcher's own).
	GID        uint32
	NodeAddr   string
	AdminAddr  string
	ClientAddr string // gateways only
	DataDir    string
	LogPath    string
	// HTTP is the client for the admin API; nil means one with
	// DefaultHTTPTimeout. Set it before the node is used.
	HTTP *http.Client

	bin string
	// marker, when set, is written into the log before every restart.
	marker string
	onExit func(Exit)

	mu         sync.Mutex
	args       []string
	proc       *process // the process last started; nil before the first Start
	paused     bool
	starts     int
	supervised bool // a Supervisor handles its exits
}

// process is one run of a node's command.
type process struct {
	cmd      *exec.Cmd
	done     chan struct{} // closed once the process was waited for
	err      error         // Wait's result; read only after done is closed
	stopping bool          // the launcher ended it (Kill or Stop): its exit is expected
}

// ended reports whether the process has been waited for.
func (p *process) ended() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Exit is a node process that exited without the launcher stopping it.
type Exit struct {
	Node string `json:"node"`
	// At is when the exit was seen.
	At time.Time `json:"at"`
	// Err is the process's exit status.
	Err string `json:"error"`
	// LogTail is the end of its log.
	LogTail string `json:"log_tail"`
}

// Args returns the process's command-line arguments.
func (n *Node) Args() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.args...)
}

// SetArgs replaces the arguments the process starts with from its next
// Start on (say, to start a gateway whose data was lost with
// --initial-cluster-state existing).
func (n *Node) SetArgs(args []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.args = append([]string(nil), args...)
}

// Start starts the process; its stdout and stderr are appended to LogPath.
// The process gets SIGKILL when the launcher's process dies, so a crashed
// launcher leaves no processes behind.
func (n *Node) Start() error {
	_, err := n.start()
	return err
}

// start starts the process and returns it.
func (n *Node) start() (*process, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.ended() {
		return nil, fmt.Errorf("start %s: already running", n.Name)
	}
	logFile, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", n.Name, err)
	}
	if n.starts > 0 && n.marker != "" {
		fmt.Fprintf(logFile, "\n==== %s: restarting %s at %s ====\n", n.marker, n.Name, time.Now().Format(time.RFC3339Nano))
	}
	cmd := exec.Command(n.bin, n.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if n.GID != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(os.Geteuid()), Gid: n.GID}
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", n.Name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	n.proc, n.paused = p, false
	n.starts++
	go n.wait(p, logFile)
	return p, nil
}

// wait reaps the process and reports an exit the launcher did not cause
// (unless a Supervisor handles the node's exits).
func (n *Node) wait(p *process, logFile *os.File) {
	err := p.cmd.Wait()
	logFile.Close()
	n.mu.Lock()
	p.err = err
	expected := p.stopping || n.supervised
	if n.proc == p {
		n.paused = false
	}
	n.mu.Unlock()
	// On record before anyone waiting for the end sees it.
	if !expected && n.onExit != nil {
		msg := "exit status 0"
		if err != nil {
			msg = err.Error()
		}
		n.onExit(Exit{Node: n.Name, At: time.Now(), Err: msg, LogTail: n.LogTail(4000)})
	}
	close(p.done)
}

// running returns the process if it runs (paused counts as running).
func (n *Node) running() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || n.proc.ended() {
		return nil
	}
	return n.proc
}

// Running reports whether the process runs (paused counts as running).
func (n *Node) Running() bool { return n.running() != nil }

// Paused reports whether the process is stopped by SIGSTOP.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused
}

// Pid is the running process's pid, or 0.
func (n *Node) Pid() int {
	if p := n.running(); p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// Exited reports whether the process last started has ended on its own
// (not by Kill or Stop), and its exit error. It stays so until the next
// Start.
func (n *Node) Exited() (exited bool, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || !n.proc.ended() || n.proc.stopping {
		return false, nil
	}
	return true, n.proc.err
}

// end marks the running process as ended by the launcher and returns it,
// or nil if nothing runs.
func (n *Node) end() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || n.proc.ended() {
		return nil
	}
	n.proc.stopping = true
	return n.proc
}

// Kill sends SIGKILL (a paused process dies too) and waits until the
// process is gone. A node that is not running is left alone.
func (n *Node) Kill() error {
	p := n.end()
	if p == nil {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", n.Name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("kill %s: still running %s after SIGKILL", n.Name, killWait)
	}
}

// Stop sends SIGTERM (a graceful stop: a gateway that leads hands its
// leadership over first) and waits until the process is gone, killing it
// after limit (the error then wraps ErrStillRunning). It returns the exit
// error of a process that did not exit cleanly. A node that is not running
// is left alone.
func (n *Node) Stop(limit time.Duration) error {
	p := n.end()
	if p == nil {
		return nil
	}
	if n.Paused() {
		// A stopped process does not see SIGTERM until it continues.
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", n.Name, err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("stop %s: %w", n.Name, p.err)
		}
		return nil
	case <-time.After(limit):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("stop %s: %w (after %v)", n.Name, ErrStillRunning, limit)
	}
}

// Restart kills the process if it runs and starts it again on the same
// data dir and ports.
func (n *Node) Restart() error {
	if err := n.Kill(); err != nil {
		return err
	}
	return n.Start()
}

// Pause stops the process with SIGSTOP: it stays alive but runs nothing,
// as a process does in a long GC pause or a frozen VM.
func (n *Node) Pause() error { return n.signal(syscall.SIGSTOP, true) }

// Resume continues a paused process with SIGCONT.
func (n *Node) Resume() error { return n.signal(syscall.SIGCONT, false) }

func (n *Node) signal(sig syscall.Signal, paused bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || n.proc.ended() {
		return fmt.Errorf("signal %s: %v: not running", n.Name, sig)
	}
	if err := n.proc.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %v: %w", n.Name, sig, err)
	}
	n.paused = paused
	return nil
}

// Ready asks /readyz; reason says why not when it is not ready: "not
// running" or "paused" for a process the launcher started, "admin address
// not answering: ..." when the request fails, else what /readyz answered.
func (n *Node) Ready(ctx context.Context) (ready bool, reason string) {
	n.mu.Lock()
	started, stopped, paused := n.proc != nil, n.proc != nil && n.proc.ended(), n.paused
	n.mu.Unlock()
	switch {
	case started && stopped:
		return false, "not running"
	case paused:
		return false, "paused"
	}
	body, status, err := n.do(ctx, http.MethodGet, "/readyz")
	if err != nil {
		return false, "admin address not answering: " + err.Error()
	}
	if status == http.StatusOK {
		return true, ""
	}
	if reason = strings.TrimSpace(string(body)); reason == "" {
		reason = strconv.Itoa(status) + " " + http.StatusText(status)
	}
	return false, reason
}

// readyPoll is how often WaitReady asks /readyz.
const readyPoll = 50 * time.Millisecond

// WaitReady waits until /readyz answers 200, within limit. It gives up at
// once when the process exits on its own.
func (n *Node) WaitReady(ctx context.Context, limit time.Duration) error {
	return poll.Until(ctx, limit, readyPoll, n.Name+" ready", func() (bool, error) {
		if exited, err := n.Exited(); exited {
			return false, poll.Abort(fmt.Errorf("exited while starting: %v", err))
		}
		ok, reason := n.Ready(ctx)
		if ok {
			return true, nil
		}
		return false, errors.New(reason)
	})
}

// Get fetches an admin path and returns its body and status code.
func (n *Node) Get(ctx context.Context, path string) ([]byte, int, error) {
	body, status, err := n.do(ctx, http.MethodGet, path)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s on %s: %w", path, n.Name, err)
	}
	return body, status, nil
}

// GetJSON fetches an admin path into v; a status other than 200 is an
// error.
func (n *Node) GetJSON(ctx context.Context, path string, v any) error {
	body, status, err := n.Get(ctx, path)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("GET %s on %s: %d %s", path, n.Name, status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode %s from %s: %w", path, n.Name, err)
	}
	return nil
}

// Post posts an empty body to an admin path and returns the status code.
func (n *Node) Post(ctx context.Context, path string) (int, error) {
	_, status, err := n.do(ctx, http.MethodPost, path)
	if err != nil {
		return 0, fmt.Errorf("POST %s on %s: %w", path, n.Name, err)
	}
	return status, nil
}

// do sends one admin request; its error is the HTTP client's, unwrapped.
func (n *Node) do(ctx context.Context, method, path string) ([]byte, int, error) {
	var body io.Reader
	if method == http.MethodPost {
		body = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+n.AdminAddr+path, body)
	if err != nil {
		return nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "text/plain")
	}
	client := n.HTTP
	if client == nil {
		client = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, adminBodyLimit))
	if err != nil {
		return nil, 0, err
	}
	return data, resp.StatusCode, nil
}

// LogTail returns the last size bytes of the node's log.
func (n *Node) LogTail(size int) string {
	f, err := os.Open(n.LogPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > int64(size) {
		_, _ = f.Seek(st.Size()-int64(size), io.SeekStart)
	}
	data, _ := io.ReadAll(f)
	return string(data)
}

// Log returns the node's whole log ("" when there is none).
func (n *Node) Log() string {
	data, _ := os.ReadFile(n.LogPath)
	return string(data)
}

// Ports lists the ports the node listens on: node, admin and (gateways)
// client.
func (n *Node) Ports() []int {
	var ports []int
	for _, addr := range []string{n.NodeAddr, n.AdminAddr, n.ClientAddr} {
		if _, port, err := net.SplitHostPort(addr); err == nil {
			if p, err := strconv.Atoi(port); err == nil {
				ports = append(ports, p)
			}
		}
	}
	return ports
}
