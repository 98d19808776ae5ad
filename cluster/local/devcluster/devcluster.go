// Package devcluster runs `tolerex dev` as one process, as the benchmarks
// do: a fresh cluster of 1 to MaxGateways gateways and Members members in
// a temporary dir, its ports in a block from a base port, ready when dev
// says so, its leader found through the gateways' /api/raft, stopped with
// SIGINT and removed. The benchmark matrix (cmd/benchmatrix) and the etcd
// comparison (cmd/etcdcompare) start their clusters with it; the fault
// suite and the e2e tests start the processes themselves (cluster/local).
package devcluster

import (
	"bufio"
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
	"time"

	"github.com/tolerex/tolerex/cluster/local/poll"
)

// Port layout of one cluster started at base (see `tolerex dev --help`):
// gateway g (from 1) serves clients on base+g-1, its node and admin
// endpoints on base+10 and base+20 plus 100*(g-1); member i uses
// base+10+i and base+20+i. With at most MaxGateways gateways a cluster
// stays below base+PortBlock, so clusters whose bases are PortBlock apart
// never share a port.
const (
	PortBlock   = 500
	MaxGateways = 3
	Members     = 3
	Tolerance   = 2
)

// readyLimit bounds the wait for dev's "cluster ready" line.
const readyLimit = 60 * time.Second

// Config describes a cluster to start.
type Config struct {
	// Binary is the tolerex binary.
	Binary string
	// BasePort is the first port of the cluster's block.
	BasePort int
	// Gateways is the size of the Raft group (1..MaxGateways).
	Gateways int
	// Args are appended to dev's flags (they come last, so they override).
	Args []string
	// Stderr receives dev's standard error (nothing if nil).
	Stderr io.Writer
}

// Cluster is a running `tolerex dev`.
type Cluster struct {
	cmd     *exec.Cmd
	stopped bool
	// Dir holds every node's data and logs.
	Dir string
	// ClientAddrs and GatewayAdmins are every gateway's HaToKuSe and
	// admin addresses, gateway 1 first; MemberAdmins the members' admin
	// addresses.
	ClientAddrs   []string
	GatewayAdmins []string
	MemberAdmins  []string
	http          *http.Client
}

// Start starts a fresh cluster as cfg describes and waits until dev says
// it is ready and a gateway leads.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Gateways < 1 || cfg.Gateways > MaxGateways {
		return nil, fmt.Errorf("a benchmark cluster has 1..%d gateways, not %d", MaxGateways, cfg.Gateways)
	}
	dir, err := os.MkdirTemp("", "tolerex-bench-")
	if err != nil {
		return nil, fmt.Errorf("create the cluster's data dir: %w", err)
	}
	addr := func(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
	cl := &Cluster{Dir: dir, http: &http.Client{Timeout: 5 * time.Second}}
	nodePort, adminPort := cfg.BasePort+10, cfg.BasePort+20
	for g := range cfg.Gateways {
		cl.ClientAddrs = append(cl.ClientAddrs, addr(cfg.BasePort+g))
		cl.GatewayAdmins = append(cl.GatewayAdmins, addr(adminPort+100*g))
	}
	for i := 1; i <= Members; i++ {
		cl.MemberAdmins = append(cl.MemberAdmins, addr(adminPort+i))
	}
	args := append([]string{"dev", "--data-dir", dir, "--gateways", strconv.Itoa(cfg.Gateways),
		"--members", strconv.Itoa(Members), "--tolerance", strconv.Itoa(Tolerance),
		"--client-addr", cl.ClientAddrs[0], "--node-port", strconv.Itoa(nodePort), "--admin-port", strconv.Itoa(adminPort)}, cfg.Args...)
	cl.cmd = exec.CommandContext(ctx, cfg.Binary, args...)
	cl.cmd.Cancel = func() error { return cl.cmd.Process.Signal(os.Interrupt) }
	out, err := cl.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("pipe from %s dev: %w", cfg.Binary, err)
	}
	cl.cmd.Stderr = cfg.Stderr
	if err := cl.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s dev: %w", cfg.Binary, err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.Contains(sc.Text(), "cluster ready") {
				ready <- true
				signalled = true
			}
		}
		if !signalled {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			cl.Stop()
			return nil, errors.New("the dev cluster exited before it was ready")
		}
	case <-time.After(readyLimit):
		cl.Stop()
		return nil, fmt.Errorf("the dev cluster was not ready within %s", readyLimit)
	}
	if _, err := cl.Leader(ctx); err != nil {
		cl.Stop()
		return nil, err
	}
	return cl, nil
}

// Stop stops the cluster (SIGINT, then SIGKILL after 20 s) and removes
// its data.
func (cl *Cluster) Stop() {
	if cl.stopped {
		return
	}
	cl.stopped = true
	if cl.cmd.Process != nil {
		_ = cl.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cl.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cl.cmd.Process.Kill()
		}
	}
	os.RemoveAll(cl.Dir)
}

// RaftView is the part of a gateway's /api/raft the benchmarks read.
type RaftView struct {
	State           string `json:"state"`
	Lead            uint64 `json:"lead"`
	Term            uint64 `json:"term"`
	LeadershipReady bool   `json:"leadership_ready"`
}

// Leader returns the index of the gateway that leads: it asks every
// gateway's /api/raft until all name the same leader and that one says
// it leads and is ready (within 30 s).
func (cl *Cluster) Leader(ctx context.Context) (int, error) {
	found := -1
	err := poll.Until(ctx, 30*time.Second, 100*time.Millisecond, "a gateway leads and the others follow it", func() (bool, error) {
		found = -1
		var lead uint64
		for g, admin := range cl.GatewayAdmins {
			var st RaftView
			if err := cl.GetJSON(ctx, "http://"+admin+"/api/raft", &st); err != nil {
				return false, err
			}
			if st.Lead == 0 || (lead != 0 && st.Lead != lead) {
				return false, fmt.Errorf("gateway %d: state %s, lead %d, term %d", g+1, st.State, st.Lead, st.Term)
			}
			lead = st.Lead
			if st.State == "leader" && st.LeadershipReady {
				found = g
			}
		}
		if found < 0 {
			return false, fmt.Errorf("gateway with id %d does not say it leads and is ready", lead)
		}
		return true, nil
	})
	return found, err
}

// GetJSON fetches url into v.
func (cl *Cluster) GetJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	resp, err := cl.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", url, err)
	}
	return nil
}
