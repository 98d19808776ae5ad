package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tolerex/tolerex/cluster/local/poll"
	"github.com/tolerex/tolerex/gateway/loadgen"
)

// tolerex dev's default ports: gateway g (from 1) serves HaToKuSe on
// devClientPort+g-1 and its admin API on devAdminPort+100*(g-1).
const (
	devClientPort = 6666
	devAdminPort  = 8000
)

// devReadyLimit bounds the wait for `tolerex dev` to say its cluster is ready.
const devReadyLimit = 90 * time.Second

// tolerexCluster is a running `tolerex dev`.
type tolerexCluster struct {
	cmd      *exec.Cmd
	exited   <-chan struct{}
	log      *os.File
	gateways int
	offset   int64 // the first key of the next SET run: every run writes fresh keys
}

// startTolerex starts `tolerex dev` with the given number of gateways (and
// its default 3 members) in dir and waits until it says the cluster is ready.
func startTolerex(ctx context.Context, bin, dir string, gateways int) (*tolerexCluster, error) {
	log, err := os.Create(filepath.Join(dir, "dev.out"))
	if err != nil {
		return nil, fmt.Errorf("create the log: %w", err)
	}
	cmd := exec.Command(bin, "dev", "--gateways", strconv.Itoa(gateways), "--data-dir", filepath.Join(dir, "data"))
	cmd.Stderr = log
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Close()
		return nil, fmt.Errorf("tolerex dev's output: %w", err)
	}
	exited, err := startProcess(cmd)
	if err != nil {
		log.Close()
		return nil, err
	}
	c := &tolerexCluster{cmd: cmd, exited: exited, log: log, gateways: gateways, offset: 1_000_000_000}
	ready := make(chan error, 1)
	go func() { // copies dev's output to its log and reports the ready line
		reported := false
		report := func(err error) {
			if !reported {
				ready <- err
				reported = true
			}
		}
		scanner := bufio.NewScanner(out)
		for scanner.Scan() {
			line := scanner.Text()
			fmt.Fprintln(log, line)
			switch {
			case strings.Contains(line, "cluster ready"):
				report(nil)
			case strings.Contains(line, "cluster not ready"):
				report(errors.New(line))
			}
		}
		report(fmt.Errorf("tolerex dev ended before its cluster was ready; see %s", log.Name()))
	}()
	timer := time.NewTimer(devReadyLimit)
	defer timer.Stop()
	select {
	case err = <-ready:
	case <-timer.C:
		err = fmt.Errorf("tolerex dev not ready within %s; see %s", devReadyLimit, log.Name())
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	if err != nil {
		_ = c.stop()
		return nil, err
	}
	return c, nil
}

func (c *tolerexCluster) clientAddrs() []string {
	addrs := make([]string, c.gateways)
	for g := range addrs {
		addrs[g] = "127.0.0.1:" + strconv.Itoa(devClientPort+g)
	}
	return addrs
}

// raftStatus is the part of a gateway's /api/raft read here.
type raftStatus struct {
	State           string `json:"state"`
	LeadershipReady bool   `json:"leadership_ready"`
}

func (c *tolerexCluster) leader(ctx context.Context) (string, error) {
	found := ""
	err := poll.Until(ctx, 30*time.Second, 100*time.Millisecond, "a gateway leads", func() (bool, error) {
		for g := 0; g < c.gateways; g++ {
			var st raftStatus
			url := fmt.Sprintf("http://127.0.0.1:%d/api/raft", devAdminPort+100*g)
			if err := getJSON(ctx, url, &st); err != nil {
				return false, err
			}
			if st.State == "leader" && st.LeadershipReady {
				found = c.clientAddrs()[g]
				return true, nil
			}
		}
		return false, errors.New("no gateway says it leads and is ready")
	})
	return found, err
}

// getJSON fetches url into v.
func getJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (c *tolerexCluster) preload(ctx context.Context, addr string, keys int64, size int) error {
	res, err := loadgen.Run(ctx, loadgen.Config{Addr: addr, Op: loadgen.OpSet, Conns: 8, Depth: 32, Size: size, Ops: keys, Keys: keys})
	if err != nil {
		return err
	}
	if res.Failed() {
		return fmt.Errorf("%d errors: %s", res.Errors, res.FirstError)
	}
	return nil
}

func (c *tolerexCluster) load(ctx context.Context, addrs []string, spec loadSpec) (Measurement, error) {
	cfg := loadgen.Config{Addrs: addrs, Conns: spec.conns, Depth: 1, Op: loadgen.Op(spec.op), Size: spec.size, Duration: spec.duration, Warmup: spec.warmup, Keys: spec.keys}
	if spec.op == opSet {
		cfg.Keys, cfg.Offset = 10_000_000, c.offset
		c.offset += cfg.Keys
	}
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return Measurement{}, err
	}
	return Measurement{OpsPerSec: res.OpsPerSec, P50Ms: res.Latency.P50, P99Ms: res.Latency.P99, Errors: res.Errors, Mismatches: res.Mismatches + res.Misses}, nil
}

func (c *tolerexCluster) stop() error {
	defer c.log.Close()
	return stopProcess(c.cmd, os.Interrupt, c.exited)
}
