package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Role is what a node does.
type Role string

// The roles of the nodes.
const (
	Gateway Role = "gateway"
	Member  Role = "member"
)

// Node is one process of the cluster: it keeps its name, addresses, data
// dir and group id across restarts.
type Node struct {
	Name string
	Role Role
	// Index counts nodes of one role from 0.
	Index int
	// GID is the group id the process runs with (0: the tool's own).
	GID        uint32
	NodeAddr   string
	AdminAddr  string
	ClientAddr string // gateways only
	DataDir    string
	LogPath    string

	bin    string
	args   []string
	http   *http.Client
	onExit func(Exit)

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the running process was waited for
	paused  bool
	killing bool // the tool is stopping it: its exit is expected
	starts  int
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

// Exit is a node process that exited without the tool stopping it.
type Exit struct {
	Node string `json:"node"`
	// At is when the exit was seen.
	At time.Time `json:"at"`
	// Err is the process's exit status.
	Err string `json:"error"`
	// LogTail is the end of its log.
	LogTail string `json:"log_tail"`
}

// Start starts the process; its stdout and stderr are appended to LogPath.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("start %s: already running", n.Name)
	}
	logFile, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: open log: %w", n.Name, err)
	}
	if n.starts > 0 {
		fmt.Fprintf(logFile, "\n==== tolerex chaos: restarting %s at %s ====\n", n.Name, time.Now().Format(time.RFC3339Nano))
	}
	cmd := exec.Command(n.bin, n.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Die with the tool even if it is killed itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if n.GID != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(os.Geteuid()), Gid: n.GID}
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	done := make(chan struct{})
	n.cmd, n.done, n.paused, n.killing = cmd, done, false, false
	n.starts++
	go n.wait(cmd, done, logFile)
	return nil
}

// wait reaps the process and reports an exit the tool did not cause.
func (n *Node) wait(cmd *exec.Cmd, done chan struct{}, logFile *os.File) {
	err := cmd.Wait()
	logFile.Close()
	n.mu.Lock()
	expected := n.killing
	if n.cmd == cmd {
		n.cmd, n.paused = nil, false
	}
	n.mu.Unlock()
	close(done)
	if !expected && n.onExit != nil {
		msg := "exit status 0"
		if err != nil {
			msg = err.Error()
		}
		n.onExit(Exit{Node: n.Name, At: time.Now(), Err: msg, LogTail: n.LogTail(4000)})
	}
}

// Running reports whether the process runs (paused counts as running).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Paused reports whether the process is stopped by SIGSTOP.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused
}

// Pid is the running process's pid, or 0.
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Kill sends SIGKILL and waits until the process is gone. A node that is
// not running is left alone.
func (n *Node) Kill() error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	if cmd == nil {
		n.mu.Unlock()
		return nil
	}
	n.killing = true
	n.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", n.Name, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("kill %s: still running 10s after SIGKILL", n.Name)
	}
}

// Stop sends SIGTERM (a graceful stop: a gateway that leads hands its
// leadership over first) and waits until the process is gone, killing it
// after limit.
func (n *Node) Stop(limit time.Duration) error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	if cmd == nil {
		n.mu.Unlock()
		return nil
	}
	n.killing = true
	n.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", n.Name, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("stop %s: still running %v after SIGTERM; killed", n.Name, limit)
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

// Pause stops the process with SIGSTOP.
func (n *Node) Pause() error { return n.signal(syscall.SIGSTOP, true) }

// Resume continues a paused process with SIGCONT.
func (n *Node) Resume() error { return n.signal(syscall.SIGCONT, false) }

func (n *Node) signal(sig syscall.Signal, paused bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return fmt.Errorf("signal %s: %v: not running", n.Name, sig)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %v: %w", n.Name, sig, err)
	}
	n.paused = paused
	return nil
}

// Ready asks /readyz; reason says why not when it is not ready.
func (n *Node) Ready(ctx context.Context) (ready bool, reason string) {
	if !n.Running() {
		return false, "not running"
	}
	if n.Paused() {
		return false, "paused"
	}
	body, status, err := n.get(ctx, "/readyz")
	if err != nil {
		return false, err.Error()
	}
	if status != http.StatusOK {
		return false, fmt.Sprintf("/readyz %d: %s", status, strings.TrimSpace(string(body)))
	}
	return true, ""
}

// GetJSON fetches an admin path into v.
func (n *Node) GetJSON(ctx context.Context, path string, v any) error {
	body, status, err := n.get(ctx, path)
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

func (n *Node) get(ctx context.Context, path string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.AdminAddr+path, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s on %s: %w", path, n.Name, err)
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s on %s: %w", path, n.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s on %s: %w", path, n.Name, err)
	}
	return body, resp.StatusCode, nil
}

// LogTail returns the last n bytes of the node's log.
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
