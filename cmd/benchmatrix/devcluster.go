package main

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
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tolerex/tolerex/cluster/local/poll"
)

// Port layout of one `tolerex dev` cluster started at base (see `tolerex
// dev --help`): gateway g (from 1) serves clients on base+g-1, its node
// and admin endpoints on base+10 and base+20 plus 100*(g-1); member i
// uses base+10+i and base+20+i. With at most maxGateways gateways a
// cluster stays below base+portBlock, so clusters whose bases are
// portBlock apart never share a port.
const (
	portBlock    = 500
	maxGateways  = 3
	devMembers   = 3
	devTolerance = 2
)

// devCluster is a running `tolerex dev`.
type devCluster struct {
	cmd     *exec.Cmd
	stopped bool
	dir     string
	// clientAddrs and gatewayAdmins are every gateway's HaToKuSe and admin
	// addresses, gateway 1 first; memberAdmins the members' admin
	// addresses.
	clientAddrs   []string
	gatewayAdmins []string
	memberAdmins  []string
	http          *http.Client
}

// startCluster starts a fresh `tolerex dev` of the given number of
// gateways (one Raft group) and 3 members, its ports from basePort on,
// and waits until it says it is ready.
func startCluster(ctx context.Context, o options, basePort, gateways int) (*devCluster, error) {
	if gateways < 1 || gateways > maxGateways {
		return nil, fmt.Errorf("a benchmark cluster has 1..%d gateways, not %d", maxGateways, gateways)
	}
	dir, err := os.MkdirTemp("", "tolerex-bench-")
	if err != nil {
		return nil, fmt.Errorf("create the cluster's data dir: %w", err)
	}
	host := "127.0.0.1"
	addr := func(port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
	cl := &devCluster{dir: dir, http: &http.Client{Timeout: 5 * time.Second}}
	nodePort, adminPort := basePort+10, basePort+20
	for g := range gateways {
		cl.clientAddrs = append(cl.clientAddrs, addr(basePort+g))
		cl.gatewayAdmins = append(cl.gatewayAdmins, addr(adminPort+100*g))
	}
	for i := 1; i <= devMembers; i++ {
		cl.memberAdmins = append(cl.memberAdmins, addr(adminPort+i))
	}
	args := append([]string{"dev", "--data-dir", dir, "--gateways", strconv.Itoa(gateways),
		"--members", strconv.Itoa(devMembers), "--tolerance", strconv.Itoa(devTolerance),
		"--no-prompt", "--fault-injection=false", "--log-level", "warn",
		"--client-addr", cl.clientAddrs[0], "--node-port", strconv.Itoa(nodePort), "--admin-port", strconv.Itoa(adminPort)}, o.devArgs...)
	cl.cmd = exec.CommandContext(ctx, o.bin, args...)
	cl.cmd.Cancel = func() error { return cl.cmd.Process.Signal(os.Interrupt) }
	out, err := cl.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("pipe from %s dev: %w", o.bin, err)
	}
	cl.cmd.Stderr = os.Stderr
	if err := cl.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s dev: %w", o.bin, err)
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
			cl.stop()
			return nil, errors.New("the dev cluster exited before it was ready")
		}
	case <-time.After(60 * time.Second):
		cl.stop()
		return nil, errors.New("the dev cluster was not ready within 60s")
	}
	if _, err := cl.leader(ctx); err != nil {
		cl.stop()
		return nil, err
	}
	return cl, nil
}

// stop stops the cluster (SIGINT, then SIGKILL after 20 s) and removes
// its data.
func (cl *devCluster) stop() {
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
	os.RemoveAll(cl.dir)
}

// raftView is the part of a gateway's /api/raft the benchmark reads.
type raftView struct {
	State           string `json:"state"`
	Lead            uint64 `json:"lead"`
	Term            uint64 `json:"term"`
	LeadershipReady bool   `json:"leadership_ready"`
}

// leader returns the index of the gateway that leads: it asks every
// gateway's /api/raft until all name the same leader and that one says
// it leads and is ready (within 30 s).
func (cl *devCluster) leader(ctx context.Context) (int, error) {
	found := -1
	err := poll.Until(ctx, 30*time.Second, 100*time.Millisecond, "a gateway leads and the others follow it", func() (bool, error) {
		found = -1
		var lead uint64
		for g, admin := range cl.gatewayAdmins {
			var st raftView
			if err := cl.getJSON(ctx, "http://"+admin+"/api/raft", &st); err != nil {
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

// getJSON fetches url into v.
func (cl *devCluster) getJSON(ctx context.Context, url string, v any) error {
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

// profile fetches CPU profiles of the gateway that leads and of member 1
// while a scenario runs (starting after its warm-up), as
// dir/<name>-<leaderLabel>.pprof and dir/<name>-member.pprof.
func (cl *devCluster) profile(ctx context.Context, o options, name, leaderLabel string) chan error {
	done := make(chan error, 1)
	go func() {
		g, err := cl.leader(ctx)
		if err != nil {
			done <- err
			return
		}
		select {
		case <-time.After(o.warmup + time.Second):
		case <-ctx.Done():
			done <- ctx.Err()
			return
		}
		seconds := max(1, int(o.duration/time.Second)-2)
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			done <- fmt.Errorf("create %s: %w", o.profile, err)
			return
		}
		targets := []struct{ admin, label string }{{cl.gatewayAdmins[g], leaderLabel}, {cl.memberAdmins[0], "member"}}
		errs := make(chan error, len(targets))
		for _, t := range targets {
			go func() {
				errs <- fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", t.admin, seconds),
					filepath.Join(o.profile, fmt.Sprintf("%s-%s.pprof", name, t.label)))
			}()
		}
		done <- errors.Join(<-errs, <-errs)
	}()
	return done
}

// fetch stores what url returns in path.
func fetch(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}

// leaderHeap forces a GC on the gateway that leads and returns its heap
// in use.
func (cl *devCluster) leaderHeap(ctx context.Context) (float64, error) {
	g, err := cl.leader(ctx)
	if err != nil {
		return 0, err
	}
	admin := cl.gatewayAdmins[g]
	if err := fetch("http://"+admin+"/debug/pprof/heap?gc=1", os.DevNull); err != nil {
		return 0, err
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("metrics of gateway %d: %w", g+1, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no go_memstats_heap_inuse_bytes in the metrics of gateway %d", g+1)
}
