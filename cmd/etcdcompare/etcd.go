package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tolerex/tolerex/cluster/local/poll"
)

// etcd member i (from 0) serves clients on etcdClientPort+10*i and its
// peers on etcdPeerPort+10*i.
const (
	etcdClientPort = 2379
	etcdPeerPort   = 2380
)

// etcdCluster is a running etcd cluster of this binary's etcd servers.
type etcdCluster struct {
	cmds    []*exec.Cmd
	exited  []<-chan struct{}
	logs    []*os.File
	clients []string
	runs    int // SET runs so far, so that every run writes fresh keys
}

// startEtcd starts nodes etcd servers in dir, their peer traffic over mTLS
// with certificates made by `tolerex certs`, each at GOMAXPROCS=procs.
func startEtcd(ctx context.Context, tolerexBin, dir string, nodes, procs int) (*etcdCluster, error) {
	tlsDir := filepath.Join(dir, "tls")
	if out, err := exec.CommandContext(ctx, tolerexBin, "certs", "--dir", tlsDir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("tolerex certs: %w: %s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this binary: %w", err)
	}
	var initial []string
	c := &etcdCluster{}
	for i := 0; i < nodes; i++ {
		initial = append(initial, fmt.Sprintf("e%d=https://127.0.0.1:%d", i+1, etcdPeerPort+10*i))
		c.clients = append(c.clients, "127.0.0.1:"+strconv.Itoa(etcdClientPort+10*i))
	}
	for i := 0; i < nodes; i++ {
		client := "http://" + c.clients[i]
		peer := fmt.Sprintf("https://127.0.0.1:%d", etcdPeerPort+10*i)
		cmd := exec.Command(self, etcdServerArg,
			"--name", fmt.Sprintf("e%d", i+1), "--data-dir", filepath.Join(dir, fmt.Sprintf("e%d", i+1)), "--log-level", "warn",
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--peer-cert-file", filepath.Join(tlsDir, "gateway.crt"), "--peer-key-file", filepath.Join(tlsDir, "gateway.key"),
			"--peer-trusted-ca-file", filepath.Join(tlsDir, "ca.crt"), "--peer-client-cert-auth")
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(procs))
		log, err := os.Create(filepath.Join(dir, fmt.Sprintf("e%d.log", i+1)))
		if err != nil {
			_ = c.stop()
			return nil, fmt.Errorf("create the log: %w", err)
		}
		cmd.Stdout, cmd.Stderr = log, log
		c.logs = append(c.logs, log)
		exited, err := startProcess(cmd)
		if err != nil {
			_ = c.stop()
			return nil, err
		}
		c.cmds, c.exited = append(c.cmds, cmd), append(c.exited, exited)
	}
	return c, nil
}

func (c *etcdCluster) clientAddrs() []string { return c.clients }

// etcdVersion is the version of the etcd server this binary runs.
func etcdVersion() string { return version.Version }

// newEtcdClient connects to endpoints, with the client's own logging off
// (it warns of every refused dial while a server starts).
func newEtcdClient(endpoints ...string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

func (c *etcdCluster) leader(ctx context.Context) (string, error) {
	cli, err := newEtcdClient(c.clients...)
	if err != nil {
		return "", fmt.Errorf("etcd client: %w", err)
	}
	defer cli.Close()
	found := ""
	err = poll.Until(ctx, 30*time.Second, 100*time.Millisecond, "an etcd member leads", func() (bool, error) {
		for _, ep := range c.clients {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := cli.Status(sctx, ep)
			cancel()
			if err != nil {
				return false, err
			}
			if st.Leader != 0 && st.Header.MemberId == st.Leader {
				found = ep
				return true, nil
			}
		}
		return false, errors.New("no member says it leads")
	})
	return found, err
}

// etcdValue is the value stored under preloaded key k: k's digits, padded.
func etcdValue(k int64, size int) string {
	return fmt.Sprintf("%0*d", size, k)
}

func (c *etcdCluster) preload(ctx context.Context, addr string, keys int64, size int) error {
	const workers = 32
	cli, err := newEtcdClient(addr)
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	defer cli.Close()
	errs := make(chan error, workers)
	for w := int64(0); w < workers; w++ {
		go func() {
			for k := w; k < keys; k += workers {
				if _, err := cli.Put(ctx, "k"+strconv.FormatInt(k, 10), etcdValue(k, size)); err != nil {
					errs <- fmt.Errorf("put k%d: %w", k, err)
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// load runs spec.conns workers, each with its own client (its own
// connection) and one request in flight, as `tolerex bench` does.
func (c *etcdCluster) load(ctx context.Context, addrs []string, spec loadSpec) (Measurement, error) {
	clients := make([]*clientv3.Client, spec.conns)
	for i := range clients {
		cli, err := newEtcdClient(addrs[i%len(addrs)])
		if err != nil {
			return Measurement{}, fmt.Errorf("etcd client: %w", err)
		}
		defer cli.Close()
		clients[i] = cli
	}
	c.runs++
	value := strings.Repeat("v", spec.size)
	start := time.Now()
	measureFrom, end := start.Add(spec.warmup), start.Add(spec.warmup+spec.duration)
	type tally struct {
		hist               *hdrhistogram.Histogram
		errors, mismatches int64
	}
	tallies := make([]tally, len(clients))
	var wg sync.WaitGroup
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := &tallies[w]
			t.hist = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
			random := rand.New(rand.NewSource(int64(w) + 1))
			for seq := 0; ctx.Err() == nil; seq++ {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				ok, err := true, error(nil)
				if spec.op == opGet {
					k := random.Int63n(spec.keys)
					var resp *clientv3.GetResponse
					if resp, err = clients[w].Get(ctx, "k"+strconv.FormatInt(k, 10)); err == nil {
						ok = len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) == etcdValue(k, spec.size)
					}
				} else {
					_, err = clients[w].Put(ctx, fmt.Sprintf("s%d-%d-%d", c.runs, w, seq), value)
				}
				t1 := time.Now()
				if t0.Before(measureFrom) || t1.After(end) {
					continue
				}
				switch {
				case err != nil:
					t.errors++
				case !ok:
					t.mismatches++
				default:
					_ = t.hist.RecordValue(int64(t1.Sub(t0) / time.Microsecond))
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Measurement{}, err
	}
	all := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	var m Measurement
	for _, t := range tallies {
		all.Merge(t.hist)
		m.Errors += t.errors
		m.Mismatches += t.mismatches
	}
	m.OpsPerSec = float64(all.TotalCount()) / spec.duration.Seconds()
	m.P50Ms = float64(all.ValueAtQuantile(50)) / 1000
	m.P99Ms = float64(all.ValueAtQuantile(99)) / 1000
	return m, nil
}

func (c *etcdCluster) stop() error {
	var first error
	for i, cmd := range c.cmds {
		if err := stopProcess(cmd, os.Interrupt, c.exited[i]); err != nil && first == nil {
			first = err
		}
	}
	for _, log := range c.logs {
		log.Close()
	}
	return first
}
