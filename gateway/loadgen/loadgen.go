// Package loadgen is a closed-loop load generator for HaToKuSe servers:
// a fixed number of connections, each keeping up to depth requests in
// flight, measuring every request's latency into HDR histograms and
// checking every GET against the value its key must hold.
package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tolerex/tolerex/gateway/client"
)

// Op selects the workload.
type Op string

// The workloads.
const (
	// OpSet stores keys in order, cycling through the key space.
	OpSet Op = "set"
	// OpGet reads random keys of the key space.
	OpGet Op = "get"
	// OpSetGet stores a key and reads it back, in order.
	OpSetGet Op = "setget"
	// OpMix does GETs of random keys (share Ratio) and SETs in order.
	OpMix Op = "mix"
)

// ParseOp validates a workload name.
func ParseOp(name string) (Op, error) {
	switch op := Op(name); op {
	case OpSet, OpGet, OpSetGet, OpMix:
		return op, nil
	}
	return "", fmt.Errorf("unknown op %q (want set, get, setget or mix)", name)
}

// Config is one load run.
type Config struct {
	Addr      string
	TLSConfig *tls.Config
	Conns     int
	Depth     int
	Op        Op
	Ratio     float64 // GET share for OpMix, 0..1
	Size      int     // message bytes
	Ops       int64   // stop after this many measured requests (0: use Duration)
	Duration  time.Duration
	Warmup    time.Duration
	Keys      int64
	Offset    int64
	// Series records a per-second time series in Result.Series.
	Series bool
	// Tick, if set, is called about every 200ms with the requests done so
	// far in the measured phase (for progress bars).
	Tick func(done int64, elapsed time.Duration)
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("no address")
	case c.Conns < 1:
		return errors.New("--conns must be at least 1")
	case c.Depth < 1:
		return errors.New("--depth must be at least 1")
	case c.Size < 1:
		return errors.New("--size must be at least 1")
	case c.Keys < 1:
		return errors.New("--keys must be at least 1")
	case c.Ops < 0 || c.Duration < 0 || c.Warmup < 0:
		return errors.New("--ops, --duration and --warmup must not be negative")
	case c.Ops == 0 && c.Duration == 0:
		return errors.New("give --ops or --duration")
	case c.Ratio < 0 || c.Ratio > 1:
		return errors.New("--ratio must be between 0 and 1")
	case c.Offset > 0 && c.Offset+c.Keys < c.Offset:
		return errors.New("--offset + --keys overflows")
	}
	_, err := ParseOp(string(c.Op))
	return err
}

// Latency summarises a histogram, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// Second is one second of the measured phase.
type Second struct {
	Second int     `json:"second"`
	Ops    int64   `json:"ops"`
	Errors int64   `json:"errors"`
	P50    float64 `json:"p50_ms"`
	P99    float64 `json:"p99_ms"`
	Max    float64 `json:"max_ms"`
}

// Result is what a run measured.
type Result struct {
	Op         Op            `json:"op"`
	Conns      int           `json:"conns"`
	Depth      int           `json:"depth"`
	Size       int           `json:"size"`
	Keys       int64         `json:"keys"`
	Offset     int64         `json:"offset"`
	Ratio      float64       `json:"ratio,omitempty"`
	Warmup     time.Duration `json:"warmup_ns"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	Ops        int64         `json:"ops"`
	Sets       int64         `json:"sets"`
	Gets       int64         `json:"gets"`
	Errors     int64         `json:"errors"`
	Mismatches int64         `json:"mismatches"`
	Misses     int64         `json:"misses"`
	OpsPerSec  float64       `json:"ops_per_sec"`
	Latency    Latency       `json:"latency"`
	SetLatency *Latency      `json:"set_latency,omitempty"`
	GetLatency *Latency      `json:"get_latency,omitempty"`
	FirstError string        `json:"first_error,omitempty"`
	Series     []Second      `json:"series,omitempty"`
}

// Failed reports whether the run saw errors or wrong values.
func (r *Result) Failed() bool { return r.Errors > 0 || r.Mismatches > 0 }

// Histogram bounds: 1µs to 60s with 3 significant digits.
const (
	histMin    = 1
	histMax    = int64(60 * time.Second / time.Microsecond)
	histDigits = 3
)

func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

func summarize(h *hdrhistogram.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Mean: h.Mean() / 1000,
	}
}

// Value is the message stored under key at the given size: the key in
// decimal, a colon, then a repeating pattern. Every writer writes the same
// bytes for a key, so any GET can be checked without coordination.
func Value(key int64, size int) []byte {
	return AppendValue(make([]byte, 0, size+21), key, size)
}

// AppendValue appends Value(key, size) to dst.
func AppendValue(dst []byte, key int64, size int) []byte {
	start := len(dst)
	dst = strconv.AppendInt(dst, key, 10)
	dst = append(dst, ':')
	for i := 0; len(dst)-start < size; i++ {
		dst = append(dst, 'a'+byte(i%26))
	}
	return dst[:start+size]
}

// run is the shared state of one load run.
type run struct {
	cfg      Config
	nextKey  atomic.Int64
	issued   atomic.Int64 // measured requests issued (for Ops)
	done     atomic.Int64 // measured requests answered
	measured atomic.Bool
	start    time.Time    // of the measured phase
	stopAt   atomic.Int64 // unix nanos the measured phase ended; 0 while it runs

	mu        sync.Mutex
	firstErr  error
	perSecond []*secondStats
}

type secondStats struct {
	ops, errors int64
	hist        *hdrhistogram.Histogram
}

func (r *run) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.firstErr == nil {
		r.firstErr = err
	}
}

// Run runs the load and returns what it measured. It returns an error only
// when the load could not run at all (no connection); request errors and
// wrong values are counted in the Result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg}
	conns := make([]*client.Client, cfg.Conns)
	for i := range conns {
		c, err := client.Dial(ctx, cfg.Addr, client.Options{TLSConfig: cfg.TLSConfig, DialTimeout: 10 * time.Second, IOTimeout: time.Minute})
		if err != nil {
			for _, open := range conns[:i] {
				open.Close()
			}
			return nil, fmt.Errorf("connection %d: %w", i+1, err)
		}
		conns[i] = c
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	workers := make([]*worker, cfg.Conns)
	var wg sync.WaitGroup
	for i, c := range conns {
		w := newWorker(r, c, uint64(i))
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(runCtx)
		}()
	}

	// Warm up, then measure until the op count or the duration is reached.
	if cfg.Warmup > 0 {
		select {
		case <-time.After(cfg.Warmup):
		case <-ctx.Done():
		}
	}
	r.start = time.Now()
	r.measured.Store(true)
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	var deadline <-chan time.Time
	if cfg.Duration > 0 {
		deadline = time.After(cfg.Duration)
	}
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-deadline:
			break wait
		case <-ticker.C:
			if cfg.Tick != nil {
				cfg.Tick(r.done.Load(), time.Since(r.start))
			}
			if cfg.Ops > 0 && r.done.Load() >= cfg.Ops {
				break wait
			}
		}
	}
	end := time.Now()
	r.stopAt.Store(end.UnixNano())
	elapsed := end.Sub(r.start)
	stop()
	wg.Wait()
	if cfg.Tick != nil {
		cfg.Tick(r.done.Load(), elapsed)
	}
	return r.result(workers, elapsed), nil
}

func (r *run) result(workers []*worker, elapsed time.Duration) *Result {
	cfg := r.cfg
	res := &Result{
		Op: cfg.Op, Conns: cfg.Conns, Depth: cfg.Depth, Size: cfg.Size, Keys: cfg.Keys, Offset: cfg.Offset,
		Warmup: cfg.Warmup, Elapsed: elapsed,
	}
	if cfg.Op == OpMix {
		res.Ratio = cfg.Ratio
	}
	all, sets, gets := newHistogram(), newHistogram(), newHistogram()
	for _, w := range workers {
		res.Sets += w.sets
		res.Gets += w.gets
		res.Errors += w.errors
		res.Mismatches += w.mismatches
		res.Misses += w.misses
		all.Merge(w.setHist)
		all.Merge(w.getHist)
		sets.Merge(w.setHist)
		gets.Merge(w.getHist)
	}
	res.Ops = res.Sets + res.Gets
	if elapsed > 0 {
		res.OpsPerSec = float64(res.Ops) / elapsed.Seconds()
	}
	res.Latency = summarize(all)
	if res.Sets > 0 && res.Gets > 0 {
		s, g := summarize(sets), summarize(gets)
		res.SetLatency, res.GetLatency = &s, &g
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.firstErr != nil {
		res.FirstError = r.firstErr.Error()
	}
	for i, s := range r.perSecond {
		if s == nil {
			s = &secondStats{hist: newHistogram()}
		}
		l := summarize(s.hist)
		res.Series = append(res.Series, Second{Second: i + 1, Ops: s.ops, Errors: s.errors, P50: l.P50, P99: l.P99, Max: l.Max})
	}
	return res
}

// record counts one measured reply in its second.
func (r *run) record(at time.Time, rtt time.Duration, failed bool) {
	sec := int(at.Sub(r.start) / time.Second)
	if sec < 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.perSecond) <= sec {
		r.perSecond = append(r.perSecond, &secondStats{hist: newHistogram()})
	}
	s := r.perSecond[sec]
	s.ops++
	if failed {
		s.errors++
	}
	_ = s.hist.RecordValue(max(histMin, min(histMax, rtt.Microseconds())))
}

// worker drives one connection: a sender keeps up to depth requests in
// flight, a receiver checks replies in order.
type worker struct {
	r        *run
	c        *client.Client
	rng      *rand.Rand
	slots    chan struct{} // one per request in flight: the window
	inflight chan pending  // the requests in flight, in send order
	want     []byte        // the receiver's buffer for expected values
	// nextOwnGet is, for setget, the key to read back next (-1: none).
	nextOwnGet int64
	// Written by the receiver only; read after it stopped.
	setHist, getHist               *hdrhistogram.Histogram
	sets, gets, errors, mismatches int64
	misses                         int64
}

type pending struct {
	get      bool
	key      int64
	sent     time.Time
	measured bool
	own      bool // a GET of a key this worker just stored (setget)
}

func newWorker(r *run, c *client.Client, seed uint64) *worker {
	return &worker{
		r: r, c: c,
		rng:        rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano()))),
		slots:      make(chan struct{}, r.cfg.Depth),
		nextOwnGet: -1,
		inflight:   make(chan pending, r.cfg.Depth),
		setHist:    newHistogram(),
		getHist:    newHistogram(),
	}
}

func (w *worker) loop(ctx context.Context) {
	if w.r.cfg.Depth == 1 {
		w.lockstep(ctx)
		return
	}
	received := make(chan struct{})
	go func() {
		defer close(received)
		w.receive()
	}()
	w.send(ctx)
	close(w.inflight)
	<-received
}

// lockstep drives a connection without pipelining on one goroutine: send,
// wait for the reply, repeat. (Two goroutines handing every request over
// a channel would cost the machine CPU the cluster under test needs.)
func (w *worker) lockstep(ctx context.Context) {
	line := make([]byte, 0, w.r.cfg.Size+32)
	for ctx.Err() == nil {
		p, ok := w.next(&line)
		if !ok {
			return
		}
		p.sent = time.Now()
		if err := w.c.Send(line); err != nil {
			w.r.fail(err)
			return
		}
		if err := w.c.Flush(); err != nil {
			w.r.fail(err)
			return
		}
		reply, err := w.c.ReadReply()
		if err != nil {
			w.r.fail(err)
			w.errors++
			return
		}
		w.check(p, reply, time.Now())
	}
}

// next picks the next request and writes its line into *line; false
// means the op budget is spent.
func (w *worker) next(line *[]byte) (pending, bool) {
	cfg := w.r.cfg
	measured := w.r.measured.Load()
	if measured && cfg.Ops > 0 && w.r.issued.Add(1) > cfg.Ops {
		return pending{}, false
	}
	p := pending{measured: measured}
	switch {
	case cfg.Op == OpSetGet && w.nextOwnGet >= 0:
		p.get, p.key, p.own = true, w.nextOwnGet, true
		w.nextOwnGet = -1
	case cfg.Op == OpGet || (cfg.Op == OpMix && w.rng.Float64() < cfg.Ratio):
		p.get, p.key = true, cfg.Offset+w.rng.Int64N(cfg.Keys)
	default:
		p.key = cfg.Offset + (w.r.nextKey.Add(1)-1)%cfg.Keys
		if cfg.Op == OpSetGet {
			w.nextOwnGet = p.key
		}
	}
	l := (*line)[:0]
	if p.get {
		l = append(l, "GET "...)
		l = strconv.AppendInt(l, p.key, 10)
	} else {
		l = append(l, "SET "...)
		l = strconv.AppendInt(l, p.key, 10)
		l = append(l, ' ')
		l = AppendValue(l, p.key, cfg.Size)
	}
	*line = l
	return p, true
}

// send issues pipelined requests until ctx ends or the op budget is spent.
func (w *worker) send(ctx context.Context) {
	line := make([]byte, 0, w.r.cfg.Size+32)
	for ctx.Err() == nil {
		p, ok := w.next(&line)
		if !ok {
			break
		}
		// A full window: push what is buffered out before waiting for a
		// slot, or the server never sees it.
		select {
		case w.slots <- struct{}{}:
		default:
			if err := w.c.Flush(); err != nil {
				w.r.fail(err)
				return
			}
			select {
			case w.slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		p.sent = time.Now()
		w.inflight <- p // never blocks: the slots bound it
		if err := w.c.Send(line); err != nil {
			w.r.fail(err)
			return
		}
		if len(w.slots) == cap(w.slots) {
			if err := w.c.Flush(); err != nil {
				w.r.fail(err)
				return
			}
		}
	}
	if err := w.c.Flush(); err != nil {
		w.r.fail(err)
	}
}

// receive reads one reply per pipelined request sent, in order.
func (w *worker) receive() {
	for p := range w.inflight {
		reply, err := w.c.ReadReply()
		now := time.Now()
		<-w.slots
		if err != nil {
			w.r.fail(err)
			w.errors++
			for range w.inflight {
				w.errors++ // every request still in flight is lost too
			}
			return
		}
		w.check(p, reply, now)
	}
}

// check verifies one reply and records it.
func (w *worker) check(p pending, reply []byte, now time.Time) {
	cfg := w.r.cfg
	rtt := now.Sub(p.sent)
	if end := w.r.stopAt.Load(); end != 0 && now.UnixNano() > end {
		p.measured = false // answered after the measured phase: check, do not count
	}
	failed := false
	switch {
	case len(reply) >= len("ERROR: ") && string(reply[:len("ERROR: ")]) == "ERROR: ":
		failed = true
		w.errors++
		w.r.fail(fmt.Errorf("server: %s", reply))
	case p.get && string(reply) == "NOT_FOUND":
		if p.own {
			w.mismatches++ // a key this connection just stored
			w.r.fail(fmt.Errorf("GET %d right after SET: NOT_FOUND", p.key))
		} else if p.measured {
			w.misses++
		}
	case p.get:
		w.want = AppendValue(w.want[:0], p.key, cfg.Size)
		if string(reply) != string(w.want) {
			w.mismatches++
			w.r.fail(fmt.Errorf("GET %d: got %q", p.key, clip(reply)))
		}
	case string(reply) != "OK":
		w.errors++
		w.r.fail(fmt.Errorf("SET %d: %q", p.key, clip(reply)))
	}
	if !p.measured {
		return
	}
	us := max(histMin, min(histMax, rtt.Microseconds()))
	if p.get {
		w.gets++
		_ = w.getHist.RecordValue(us)
	} else {
		w.sets++
		_ = w.setHist.RecordValue(us)
	}
	w.r.done.Add(1)
	if cfg.Series {
		w.r.record(now, rtt, failed)
	}
}

func clip(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}
