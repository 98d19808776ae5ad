package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tolerex/tolerex/cluster/local/devcluster"
)

// The benchmarks' clusters: `tolerex dev` run by cluster/local/devcluster.
const (
	portBlock    = devcluster.PortBlock
	devMembers   = devcluster.Members
	devTolerance = devcluster.Tolerance
)

// devCluster is a running `tolerex dev`.
type devCluster = devcluster.Cluster

// startCluster starts a fresh `tolerex dev` of the given number of
// gateways (one Raft group) and 3 members, its ports from basePort on,
// with the benchmarks' settings (no prompt, no fault injection, log level
// warn) and o.devArgs, and waits until it is ready.
func startCluster(ctx context.Context, o options, basePort, gateways int) (*devCluster, error) {
	return devcluster.Start(ctx, devcluster.Config{
		Binary: o.bin, BasePort: basePort, Gateways: gateways, Stderr: os.Stderr,
		Args: append([]string{"--no-prompt", "--fault-injection=false", "--log-level", "warn"}, o.devArgs...),
	})
}

// profile fetches CPU profiles of the gateway that leads and of member 1
// while a scenario runs (starting after its warm-up), as
// dir/<name>-<leaderLabel>.pprof and dir/<name>-member.pprof.
func profileCluster(ctx context.Context, cl *devCluster, o options, name, leaderLabel string) chan error {
	done := make(chan error, 1)
	go func() {
		g, err := cl.Leader(ctx)
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
		targets := []struct{ admin, label string }{{cl.GatewayAdmins[g], leaderLabel}, {cl.MemberAdmins[0], "member"}}
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
func leaderHeap(ctx context.Context, cl *devCluster) (float64, error) {
	g, err := cl.Leader(ctx)
	if err != nil {
		return 0, err
	}
	admin := cl.GatewayAdmins[g]
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
