// Package local runs a cluster of tolerex processes on this machine: N
// gateways (one Raft group) and M members of the tolerex binary, each with
// its ports, data dir and log, certificates generated once into a dir, and
// optionally a group id per node so that partitions can cut them apart. It
// starts, kills, stops, pauses, resumes and restarts nodes on the same data
// dir and ports, reports exits it did not cause, waits until the cluster is
// healthy, and supervises nodes (restart with backoff, readiness reports).
//
// `tolerex dev`, the fault suite (`tolerex chaos`) and the end-to-end tests
// all launch their clusters with it. It returns errors and never imports
// testing; the e2e harness wraps it for tests.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
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
	// Dir holds the certificates (Dir/tls) and every node's data dir
	// (Dir/<name>) and, unless LogDir is set, its log (Dir/<name>.log).
	Dir string
	// LogDir holds the nodes' logs instead of Dir.
	LogDir string
	// Gateways is the number of gateways (at least 1); Members the number
	// of members (more can be added with AddMember).
	Gateways  int
	Members   int
	Tolerance int
	// Insecure runs the nodes without TLS (--insecure) and generates no
	// certificates.
	Insecure bool
	// TLSHosts are names or addresses the node certificates are valid for
	// besides localhost, 127.0.0.1 and ::1.
	TLSHosts []string
	// NoPrompt starts the gateways with --no-prompt.
	NoPrompt bool
	// LogLevel is the nodes' log level ("info" if empty).
	LogLevel string
	// GatewayArgs and MemberArgs are appended to every gateway's and
	// member's flags; they come last, so they override the launcher's.
	GatewayArgs []string
	MemberArgs  []string
	// GatewayGroupArgs, when set, returns flags that make gateway i part of
	// the group of all gateways (RaftGroup gives the usual ones); with one
	// gateway it may be nil.
	GatewayGroupArgs func(i int, gateways []*Node) []string
	// Addrs gives the nodes their addresses; the default is a new
	// PortPicker (free ports at random in PickLow..PickHigh).
	Addrs Addresser
	// LoneGatewayName, when set, names the gateway of a cluster of one
	// gateway (`tolerex dev` and the e2e tests call it "gateway"); gateways
	// are otherwise gateway-1, gateway-2, ... and members member-1, ...
	LoneGatewayName string
	// DataDirs, when set, gives the data dirs of nodes by name (a mount
	// point the caller prepared, a dir named as an earlier release named
	// it); the default is Dir/<name>.
	DataDirs map[string]string
	// GIDBase, when not 0, runs node i (gateways first) with group id
	// GIDBase+1+i, for partitions. It needs root.
	GIDBase uint32
	// HTTPTimeout bounds one admin API request (DefaultHTTPTimeout if 0).
	HTTPTimeout time.Duration
	// RestartMarker, when set, is written into a node's log before every
	// restart: "==== <RestartMarker>: restarting <name> at <time> ====".
	RestartMarker string
}

// Cluster is a set of node processes.
type Cluster struct {
	cfg      Config
	TLSDir   string
	Gateways []*Node
	Members  []*Node
	http     *http.Client
	gids     uint32 // group ids handed out

	mu    sync.Mutex
	exits []Exit
}

// New prepares a cluster: it generates certificates unless Dir/tls has
// them, creates the dirs and assigns every node its ports, data dir, log
// and arguments. Nothing runs yet.
func New(cfg Config) (*Cluster, error) {
	if cfg.Gateways < 1 || cfg.Members < 0 {
		return nil, fmt.Errorf("cluster needs at least one gateway, got %d gateways and %d members", cfg.Gateways, cfg.Members)
	}
	if cfg.Tolerance < 1 {
		return nil, fmt.Errorf("tolerance %d: it must be at least 1", cfg.Tolerance)
	}
	if cfg.Gateways > 1 && cfg.GatewayGroupArgs == nil {
		return nil, errors.New("more than one gateway needs GatewayGroupArgs (the Raft flags)")
	}
	if cfg.Binary == "" || cfg.Dir == "" {
		return nil, errors.New("cluster needs a binary and a dir")
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	if cfg.LogDir == "" {
		cfg.LogDir = cfg.Dir
	}
	if cfg.Addrs == nil {
		cfg.Addrs = NewPortPicker()
	}
	if cfg.HTTPTimeout <= 0 {
		cfg.HTTPTimeout = DefaultHTTPTimeout
	}
	for _, dir := range []string{cfg.Dir, cfg.LogDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create cluster dir: %w", err)
		}
	}
	c := &Cluster{cfg: cfg, TLSDir: filepath.Join(cfg.Dir, "tls"), http: &http.Client{Timeout: cfg.HTTPTimeout}}
	if !cfg.Insecure {
		if _, err := EnsureCerts(c.TLSDir, cfg.TLSHosts); err != nil {
			return nil, err
		}
	}
	for i := range cfg.Gateways {
		name := fmt.Sprintf("%s-%d", Gateway, i+1)
		if cfg.Gateways == 1 && cfg.LoneGatewayName != "" {
			name = cfg.LoneGatewayName
		}
		n, err := c.newNode(Gateway, i, name)
		if err != nil {
			return nil, err
		}
		c.Gateways = append(c.Gateways, n)
	}
	for i, g := range c.Gateways {
		args := append([]string{"gateway", "--client-addr", g.ClientAddr, "--tolerance", strconv.Itoa(cfg.Tolerance)}, c.commonArgs(g)...)
		if cfg.NoPrompt {
			args = append(args, "--no-prompt")
		}
		if cfg.GatewayGroupArgs != nil {
			args = append(args, cfg.GatewayGroupArgs(i, c.Gateways)...)
		}
		g.args = append(args, cfg.GatewayArgs...)
	}
	for range cfg.Members {
		if _, err := c.AddMember(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// newNode places one node: its addresses, data dir, log and group id.
func (c *Cluster) newNode(role Role, index int, name string) (*Node, error) {
	addrs, err := c.cfg.Addrs.Addrs(role, index)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", name, err)
	}
	n := &Node{
		Name: name, Role: role, Index: index,
		NodeAddr: addrs.Node, AdminAddr: addrs.Admin, ClientAddr: addrs.Client,
		DataDir: c.cfg.DataDirs[name], LogPath: filepath.Join(c.cfg.LogDir, name+".log"),
		HTTP: c.http, bin: c.cfg.Binary, marker: c.cfg.RestartMarker, onExit: c.recordExit,
	}
	if n.DataDir == "" {
		n.DataDir = filepath.Join(c.cfg.Dir, name)
	}
	if c.cfg.GIDBase != 0 {
		c.gids++
		n.GID = c.cfg.GIDBase + c.gids
	}
	return n, nil
}

// commonArgs are the flags every node gets.
func (c *Cluster) commonArgs(n *Node) []string {
	args := []string{"--node-addr", n.NodeAddr, "--admin-addr", n.AdminAddr, "--data-dir", n.DataDir}
	if c.cfg.Insecure {
		args = append(args, "--insecure")
	} else {
		args = append(args, "--tls-dir", c.TLSDir)
	}
	return append(args, "--log-level", c.cfg.LogLevel)
}

// AddMember prepares one more member that joins every gateway (it does not
// start it). It is not safe to call while another goroutine uses the
// cluster's node lists.
func (c *Cluster) AddMember() (*Node, error) {
	i := len(c.Members)
	m, err := c.newNode(Member, i, fmt.Sprintf("%s-%d", Member, i+1))
	if err != nil {
		return nil, err
	}
	joins := make([]string, len(c.Gateways))
	for j, g := range c.Gateways {
		joins[j] = g.NodeAddr
	}
	m.args = append(append([]string{"member", "--join", strings.Join(joins, ",")}, c.commonArgs(m)...), c.cfg.MemberArgs...)
	c.Members = append(c.Members, m)
	return m, nil
}

// RaftGroup returns the flags that make gateway i (from 0) a member of the
// Raft group of all the gateways, as an operator would start them: ids
// from 1 in order, every gateway in --initial-cluster.
func RaftGroup(i int, gateways []*Node) []string {
	initial := make([]string, len(gateways))
	for j, g := range gateways {
		initial[j] = fmt.Sprintf("%d=%s", j+1, g.NodeAddr)
	}
	return []string{"--gateway-id", strconv.Itoa(i + 1), "--initial-cluster", strings.Join(initial, ",")}
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

// ListenAddrs lists every address the nodes listen on: the gateways'
// client addresses, then every node's node and admin address.
func (c *Cluster) ListenAddrs() []string {
	addrs := c.ClientAddrs()
	for _, n := range c.Nodes() {
		addrs = append(addrs, n.NodeAddr, n.AdminAddr)
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

// Exits lists the exits the launcher did not cause, in order; the exits of
// supervised nodes go to their Supervisor instead.
func (c *Cluster) Exits() []Exit {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Exit(nil), c.exits...)
}

// status is the part of a gateway's /api/cluster the launcher reads.
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
		if !n.Running() {
			return false, n.Name + ": not running"
		}
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

// healthPoll is how often WaitHealthy asks.
const healthPoll = 100 * time.Millisecond

// WaitHealthy waits until Healthy, within limit.
func (c *Cluster) WaitHealthy(ctx context.Context, limit time.Duration) error {
	return poll.Until(ctx, limit, healthPoll, "cluster healthy", func() (bool, error) {
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
