package main

import (
	"context"
	"fmt"
	"os"

	"github.com/tolerex/tolerex/cluster/local/devcluster"
	"github.com/tolerex/tolerex/gateway/loadgen"
)

// tolerexBasePort is the first port of the Tolerex clusters' block.
const tolerexBasePort = 17000

// tolerexCluster is a running `tolerex dev` with its own defaults (log
// level, prompt, fault injection), as `make run` starts it.
type tolerexCluster struct {
	dev    *devcluster.Cluster
	offset int64 // the first key of the next SET run: every run writes fresh keys
}

// startTolerex starts `tolerex dev` with the given number of gateways (and
// 3 members) and waits until it is ready and a gateway leads.
func startTolerex(ctx context.Context, bin string, gateways int) (*tolerexCluster, error) {
	dev, err := devcluster.Start(ctx, devcluster.Config{Binary: bin, BasePort: tolerexBasePort, Gateways: gateways, Stderr: os.Stderr})
	if err != nil {
		return nil, err
	}
	return &tolerexCluster{dev: dev, offset: 1_000_000_000}, nil
}

func (c *tolerexCluster) clientAddrs() []string { return c.dev.ClientAddrs }

func (c *tolerexCluster) leader(ctx context.Context) (string, error) {
	g, err := c.dev.Leader(ctx)
	if err != nil {
		return "", err
	}
	return c.dev.ClientAddrs[g], nil
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
	c.dev.Stop()
	return nil
}
