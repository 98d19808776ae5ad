// Package cluster starts and controls a Tolerex cluster of real processes
// for the fault suite: N gateways and M members of the tolerex binary on
// 127.0.0.1, with generated certificates, ports below Linux's ephemeral
// range, a data dir and log per node, and a group id per node so that
// netfault can partition them. It restarts a node on the same data dir and
// ports, pauses and resumes it, reports exits it did not cause, and waits
// until the cluster is healthy.
//
// Today a cluster has one gateway; with the Raft gateways it has 1, 3 or
// 5, and the nemesis aims at the leader that Leader finds.
package cluster

import (
	"context"
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
	"time"

	"github.com/tolerex/tolerex/cluster/local/poll"
)

// Config describes a cluster.
type Config struct {
	// Binary is the tolerex binary the nodes run.
	Binary string
	// Dir holds the certificates, every node's data dir and log.
	Dir       string
	Gateways  int
	Members   int
	Tolerance int
	// GIDBase, when not 0, runs node i (gateways first) with group id
	// GIDBase+1+i, for partitions. It needs root.
	GIDBase uint32
	// LogLevel is the nodes' log level.
	LogLevel string
	// GatewayArgs and MemberArgs are appended to every gateway's and
	// member's flags.
	GatewayArgs []string
	MemberArgs  []string
	// GatewayGroupArgs, when set, returns flags that make gateway i part of
	// the group of all gateways (the Raft flags); with one gateway it may
	// be nil.
	GatewayGroupArgs func(i int, gateways []*Node) []string
	// MemberDataDirs, when set, names member i's data dir (a mount point
	// the caller prepared); the default is Dir/member-<i+1>.
	MemberDataDirs map[int]string
	// Ports, when set, hands out listening ports; the default picks free
	// ones at random in 20000-32000.
	Ports func() (int, error)
}

// Cluster is a set of node processes.
type Cluster struct {
	cfg      Config
	TLSDir   string
	Gateways []*Node
	Members  []*Node
	http     *http.Client

	mu    sync.Mutex
	exits []Exit
}

// New prepares a cluster: it generates certificates with `tolerex certs`
// and assigns every node its ports, data dir and log. Nothing runs yet.
func New(cfg Config) (*Cluster, error) {
	if cfg.Gateways < 1 || cfg.Members < 1 {
		return nil, fmt.Errorf("cluster needs at least one gateway and one member, got %d and %d", cfg.Gateways, cfg.Members)
	}
	if cfg.Tolerance < 1 || cfg.Tolerance > cfg.Members {
		return nil, fmt.Errorf("tolerance %d needs 1..%d (the number of members)", cfg.Tolerance, cfg.Members)
	}
	if cfg.Gateways > 1 && cfg.GatewayGroupArgs == nil {
		return nil, errors.New("more than one gateway needs GatewayGroupArgs (the Raft flags)")
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	if cfg.Ports == nil {
		cfg.Ports = newPortPicker()
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cluster dir: %w", err)
	}
	c := &Cluster{cfg: cfg, TLSDir: filepath.Join(cfg.Dir, "tls"), http: &http.Client{Timeout: 2 * time.Second}}
	if out, err := exec.Command(cfg.Binary, "certs", "--dir", c.TLSDir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("tolerex certs: %w: %s", err, strings.TrimSpace(string(out)))
	}
	addr := func() (string, error) {
		port, err := cfg.Ports()
		if err != nil {
			return "", err
		}
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
	}
	gid := uint32(0)
	newNode := func(role Role, index int, dataDir string) (*Node, error) {
		name := fmt.Sprintf("%s-%d", role, index+1)
		n := &Node{Name: name, Role: role, Index: index, bin: cfg.Binary, http: c.http, onExit: c.recordExit,
			DataDir: dataDir, LogPath: filepath.Join(cfg.Dir, name+".log")}
		if n.DataDir == "" {
			n.DataDir = filepath.Join(cfg.Dir, name)
		}
		if cfg.GIDBase != 0 {
			gid++
			n.GID = cfg.GIDBase + gid
		}
		var err error
		if n.NodeAddr, err = addr(); err != nil {
			return nil, err
		}
		if n.AdminAddr, err = addr(); err != nil {
			return nil, err
		}
		if role == Gateway {
			if n.ClientAddr, err = addr(); err != nil {
				return nil, err
			}
		}
		return n, nil
	}
	for i := range cfg.Gateways {
		n, err := newNode(Gateway, i, "")
		if err != nil {
			return nil, err
		}
		c.Gateways = append(c.Gateways, n)
	}
	for i := range cfg.Members {
		n, err := newNode(Member, i, cfg.MemberDataDirs[i])
		if err != nil {
			return nil, err
		}
		c.Members = append(c.Members, n)
	}
	common := func(n *Node) []string {
		return []string{"--node-addr", n.NodeAddr, "--admin-addr", n.AdminAddr, "--data-dir", n.DataDir,
			"--tls-dir", c.TLSDir, "--log-level", cfg.LogLevel}
	}
	var joins []string
	for i, g := range c.Gateways {
		g.args = append([]string{"gateway", "--client-addr", g.ClientAddr, "--no-prompt",
			"--tolerance", strconv.Itoa(cfg.Tolerance)}, common(g)...)
		if cfg.GatewayGroupArgs != nil {
			g.args = append(g.args, cfg.GatewayGroupArgs(i, c.Gateways)...)
		}
		g.args = append(g.args, cfg.GatewayArgs...)
		joins = append(joins, g.NodeAddr)
	}
	for _, m := range c.Members {
		m.args = append(append([]string{"member", "--join", strings.Join(joins, ",")}, common(m)...), cfg.MemberArgs...)
	}
	return c, nil
}

// newPortPicker returns a picker of free ports below Linux's ephemeral
// range (32768 and up), so no outgoing connection takes one between the
// pick and the moment its process listens, and never the same port twice.
func newPortPicker() func() (int, error) {
	var mu sync.Mutex
	taken := make(map[int]bool)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	return func() (int, error) {
		const low, high = 20000, 32000
		mu.Lock()
		defer mu.Unlock()
		for range 500 {
			port := low + rng.IntN(high-low)
			if taken[port] {
				continue
			}
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				continue
			}
			l.Close()
			taken[port] = true
			return port, nil
		}
		return 0, errors.New("no free port found in 20000-32000")
	}
}

// Nodes lists every node, gateways first.
func (c *Cluster) Nodes() []*Node {
	return append(append([]*Node(nil), c.Gateways...), c.Members...)
}

// Node finds a node by name.
func (c *Cluster) Node(name string) (*Node, bool) {
	for _, n := range c.Nodes() {
		if n.Name == name {
			return n, true
		}
	}
	return nil, false
}

// ClientAddrs are the gateways' HaToKuSe addresses.
func (c *Cluster) ClientAddrs() []string {
	addrs := make([]string, len(c.Gateways))
	for i, g := range c.Gateways {
		addrs[i] = g.ClientAddr
	}
	return addrs
}

// Start starts every node that is not running, gateways first.
func (c *Cluster) Start() error {
	for _, n := range c.Nodes() {
		if n.Running() {
			continue
		}
		if err := n.Start(); err != nil {
			return err
		}
	}
	return nil
}

// KillAll SIGKILLs every node (paused ones too) and waits until they are
// gone.
func (c *Cluster) KillAll() error {
	var errs []error
	for _, n := range c.Nodes() {
		if err := n.Kill(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *Cluster) recordExit(e Exit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.exits = append(c.exits, e)
}

// Exits lists the exits the tool did not cause, in order.
func (c *Cluster) Exits() []Exit {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Exit(nil), c.exits...)
}

// status is the part of a gateway's /api/cluster the tool reads.
type status struct {
	Active      bool `json:"active"`
	LiveMembers int  `json:"live_members"`
}

// Leader is the gateway that leads: the one whose /api/cluster says it is
// active. With one gateway it is that gateway even when it is down.
// ok is false when no gateway says it leads.
func (c *Cluster) Leader(ctx context.Context) (*Node, bool) {
	if len(c.Gateways) == 1 {
		return c.Gateways[0], true
	}
	for _, g := range c.Gateways {
		if !g.Running() || g.Paused() {
			continue
		}
		var st status
		if g.GetJSON(ctx, "/api/cluster", &st) == nil && st.Active {
			return g, true
		}
	}
	return nil, false
}

// Healthy reports whether every node runs and is ready and the leader sees
// every member live; reason says what is missing.
func (c *Cluster) Healthy(ctx context.Context) (bool, string) {
	for _, n := range c.Nodes() {
		if ok, reason := n.Ready(ctx); !ok {
			return false, n.Name + ": " + reason
		}
	}
	leader, ok := c.Leader(ctx)
	if !ok {
		return false, "no gateway leads"
	}
	var st status
	if err := leader.GetJSON(ctx, "/api/cluster", &st); err != nil {
		return false, err.Error()
	}
	if !st.Active {
		return false, leader.Name + ": leader not active"
	}
	if st.LiveMembers != len(c.Members) {
		return false, fmt.Sprintf("%s sees %d of %d members live", leader.Name, st.LiveMembers, len(c.Members))
	}
	return true, ""
}

// WaitHealthy waits until Healthy, within limit.
func (c *Cluster) WaitHealthy(ctx context.Context, limit time.Duration) error {
	return poll.Until(ctx, limit, 100*time.Millisecond, "cluster healthy", func() (bool, error) {
		ok, reason := c.Healthy(ctx)
		if ok {
			return true, nil
		}
		return false, errors.New(reason)
	})
}

// CopyLogs copies every node's log into dir.
func (c *Cluster) CopyLogs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create log dir: %w", err)
	}
	var errs []error
	for _, n := range c.Nodes() {
		if err := copyFile(n.LogPath, filepath.Join(dir, filepath.Base(n.LogPath))); err != nil {
			errs = append(errs, fmt.Errorf("copy log of %s: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
