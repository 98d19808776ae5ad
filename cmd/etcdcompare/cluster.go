package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// Workloads and where the clients connect.
const (
	opSet         = "set"
	opGet         = "get"
	clientsLeader = "leader"
	clientsSpread = "spread"
	systemTolerex = "tolerex"
)

// cluster is one running cluster of either system.
type cluster interface {
	// leader returns the client address of the node that leads, once the
	// cluster has one that is ready to serve.
	leader(ctx context.Context) (string, error)
	// clientAddrs are every node's client addresses.
	clientAddrs() []string
	// preload stores keys 0..keys-1 through addr.
	preload(ctx context.Context, addr string, keys int64, size int) error
	// load runs one measured workload with the connections spread over addrs.
	load(ctx context.Context, addrs []string, spec loadSpec) (Measurement, error)
	// stop ends every process of the cluster.
	stop() error
}

// loadSpec is one measured run.
type loadSpec struct {
	op               string
	conns, size      int
	keys             int64 // the preloaded keys GETs read
	duration, warmup time.Duration
}

// stopGrace is how long a process may take to exit after its stop signal
// before it is killed.
const stopGrace = 30 * time.Second

// stopProcess signals cmd and waits for it to exit, killing it after
// stopGrace; done must be closed when cmd.Wait has returned.
func stopProcess(cmd *exec.Cmd, sig os.Signal, done <-chan struct{}) error {
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", cmd.Path, err)
	}
	timer := time.NewTimer(stopGrace)
	defer timer.Stop()
	select {
	case <-done:
		return nil
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not exit within %s of %s; killed", cmd.Path, stopGrace, sig)
	}
}

// startProcess starts cmd and returns a channel closed when it has exited.
func startProcess(cmd *exec.Cmd) (<-chan struct{}, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	return done, nil
}
