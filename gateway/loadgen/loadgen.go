// Package loadgen is a closed-loop load generator for HaToKuSe servers:
// a fixed number of connections, each keeping up to depth requests in
// flight, measuring every request's latency into HDR histograms and
// checking every GET against the value its key must hold.
//
// Given several addresses (the gateways of one group), it spreads the
// connections over them round robin, and a connection that is lost moves
// on to the next address of the list: the requests in flight on it are
// counted as errors (lost in flight) and are not sent again. A gateway
// that answers "gateway unavailable: ..." did not run the request (a
// definite refusal: it runs no Raft, or it is shutting down): the
// connection moves on and sends those requests again to the next gateway,
// as a client with a list of gateways should; they are not errors unless
// every gateway of the list refused them.
package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tolerex/tolerex/gateway/client"
	"github.com/tolerex/tolerex/gateway/codec"
)

// defaultIOTimeout is Config.IOTimeout's default.
const defaultIOTimeout = time.Minute

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
	// Addr is the server to load, when Addrs is empty.
	Addr string
	// Addrs, when not empty, are the servers (the gateways of one group):
	// connection i starts at Addrs[i mod len(Addrs)], trying the addresses
	// after it if that one does not answer, and a lost connection moves to
	// the address after the one it used (see client.Failover).
	Addrs     []string
	TLSConfig *tls.Config
	// IOTimeout bounds the wait for each reply; a gateway that does not
	// answer within it counts as lost. 0 means one minute.
	IOTimeout time.Duration
	// ReconnectBackoff is the pause between passes over the address list
	// when reconnecting; 0 means client.DefaultBackoff.
	ReconnectBackoff time.Duration
	Conns            int
	Depth            int
	Op               Op
	Ratio            float64 // GET share for OpMix, 0..1
	Size             int     // message bytes
	Ops              int64   // stop after this many measured requests (0: use Duration)
	Duration         time.Duration
	Warmup           time.Duration
	Keys             int64
	Offset           int64
	// Series records a per-second time series in Result.Series.
	Series bool
	// Tick, if set, is called about every 200ms with the requests done so
	// far in the measured phase (for progress bars).
	Tick func(done int64, elapsed time.Duration)
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Addr == "" && len(c.Addrs) == 0:
		return errors.New("no address")
	case c.IOTimeout < 0:
		return errors.New("--io-timeout must not be negative")
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

// Gateway is what one address of the list saw in a run.
type Gateway struct {
	Addr string `json:"addr"`
	// Conns is how many connections started on it.
	Conns int `json:"conns"`
	// ReconnectsTo counts connections that moved to it after a loss.
	ReconnectsTo int64 `json:"reconnects_to"`
	// LostConns counts its connections that were lost.
	LostConns int64 `json:"lost_conns"`
	// LeftUnavailable counts its connections that left it for the next
	// address because it answered "gateway unavailable: ..." (it runs no
	// Raft, or it is shutting down: codec.GatewayUnavailable).
	LeftUnavailable int64 `json:"left_unavailable"`
	// Resent counts the requests it refused so, which were sent again to
	// the next address.
	Resent int64 `json:"resent"`
	// Ops counts the measured requests it answered.
	Ops int64 `json:"ops"`
	// Errors counts its error replies and the requests lost in flight on
	// its connections (warmup included, as Result.Errors).
	Errors int64 `json:"errors"`
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

	// DefiniteErrors and IndeterminateErrors split Errors by what they say
	// about the request's effect (codec.ClassifyError): definite, it had
	// none and never will; indeterminate, it may have. A request lost in
	// flight is indeterminate if it is a SET, and definite if it is a GET
	// (a read has no effect).
	DefiniteErrors      int64 `json:"errors_definite"`
	IndeterminateErrors int64 `json:"errors_indeterminate"`
	// LostInFlight counts the requests in flight on lost connections,
	// included in Errors. None of them was sent again.
	LostInFlight int64 `json:"lost_in_flight"`
	// UnknownKeys are the keys of the SETs whose outcome is unknown (lost
	// in flight, or answered with an indeterminate error), sorted, at most
	// MaxFailedKeys of them: each may or may not be stored. A key the run
	// wrote and a later read finds missing must be among them or among
	// RefusedKeys, or an acknowledged write was lost.
	UnknownKeys []int64 `json:"unknown_keys,omitempty"`
	// RefusedKeys are the keys of the SETs answered with a definite error
	// (nothing was stored), sorted, at most MaxFailedKeys of them.
	RefusedKeys []int64 `json:"refused_keys,omitempty"`
	// FailedKeysTruncated is set when more SETs failed than the two lists
	// hold.
	FailedKeysTruncated bool `json:"failed_keys_truncated,omitempty"`
	// Reconnects counts connections moved to another address (or the same
	// one, with one address) after a loss, or, with several addresses,
	// after the gateway answered "gateway unavailable: ...".
	Reconnects int64 `json:"reconnects"`
	// LeftUnavailable counts the moves because a gateway answered "gateway
	// unavailable: ..." (included in Reconnects).
	LeftUnavailable int64 `json:"left_unavailable"`
	// Resent counts the requests a gateway refused with "gateway
	// unavailable: ..." (with several addresses) that were sent again to
	// the next one: they had not run, so this is no error. Each is counted
	// once in Ops, when it is answered. A request refused by as many
	// gateways as the list holds is not sent again: it counts as a
	// (definite) error.
	Resent int64 `json:"resent"`
	// ConnsGivenUp counts connections that were lost and found no address
	// to reconnect to; they sent nothing more.
	ConnsGivenUp int64 `json:"conns_given_up"`
	// Gateways has one entry per address, in list order.
	Gateways []Gateway `json:"gateways"`
}

// Failed reports whether the run saw errors or wrong values.
func (r *Result) Failed() bool { return r.Errors > 0 || r.Mismatches > 0 }

// MaxFailedKeys bounds Result.UnknownKeys and Result.RefusedKeys each (and
// what a worker keeps), so that a run whose every request fails stays
// small in memory and in its JSON.
const MaxFailedKeys = 10_000

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
	addrs    []string
	nextKey  atomic.Int64
	issued   atomic.Int64 // measured requests issued (for Ops)
	done     atomic.Int64 // measured requests answered or lost
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

// reconnectBackoff is ReconnectBackoff, or client.DefaultBackoff for 0.
func (c *Config) reconnectBackoff() time.Duration {
	if c.ReconnectBackoff > 0 {
		return c.ReconnectBackoff
	}
	return client.DefaultBackoff
}

// addrList is Addrs, or Addr alone.
func (c *Config) addrList() []string {
	if len(c.Addrs) > 0 {
		return c.Addrs
	}
	return []string{c.Addr}
}

// Run runs the load and returns what it measured. It returns an error only
// when the load could not run at all (a connection found no address that
// answered); request errors, lost connections and wrong values are
// counted in the Result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, addrs: cfg.addrList()}
	ioTimeout := cfg.IOTimeout
	if ioTimeout == 0 {
		ioTimeout = defaultIOTimeout
	}
	dialer := &client.Dialer{
		Addrs:   r.addrs,
		Options: client.Options{TLSConfig: cfg.TLSConfig, DialTimeout: 10 * time.Second, IOTimeout: ioTimeout},
		Backoff: cfg.ReconnectBackoff,
	}
	conns := make([]*client.Failover, cfg.Conns)
	for i := range conns {
		f, err := dialer.Connect(ctx, i)
		if err != nil {
			for _, open := range conns[:i] {
				open.Close()
			}
			return nil, fmt.Errorf("connection %d: %w", i+1, err)
		}
		conns[i] = f
	}
	defer func() {
		for _, f := range conns {
			f.Close()
		}
	}()

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	workers := make([]*worker, cfg.Conns)
	var wg sync.WaitGroup
	for i, f := range conns {
		w := newWorker(r, f, uint64(i))
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(runCtx)
		}()
	}
	// allDone is closed when every worker has stopped: out of op budget,
	// or without a connection.
	allDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(allDone)
	}()

	// Warm up, then measure until the op count or the duration is reached.
	if cfg.Warmup > 0 {
		warmup := time.NewTimer(cfg.Warmup)
		select {
		case <-warmup.C:
		case <-ctx.Done():
		case <-allDone:
		}
		warmup.Stop()
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
		case <-allDone:
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
	<-allDone
	if cfg.Tick != nil {
		cfg.Tick(r.done.Load(), elapsed)
	}
	return r.result(workers, elapsed), nil
}

func (r *run) result(workers []*worker, elapsed time.Duration) *Result {
	cfg := r.cfg
	res := &Result{
		Op: cfg.Op, Conns: cfg.Conns, Depth: cfg.Depth, Size: cfg.Size, Keys: cfg.Keys, Offset: cfg.Offset,
		Warmup: cfg.Warmup, Elapsed: elapsed, Gateways: make([]Gateway, len(r.addrs)),
	}
	for i, addr := range r.addrs {
		res.Gateways[i].Addr = addr
	}
	if cfg.Op == OpMix {
		res.Ratio = cfg.Ratio
	}
	all, sets, gets := newHistogram(), newHistogram(), newHistogram()
	for _, w := range workers {
		res.Sets += w.sets
		res.Gets += w.gets
		res.Errors += w.errors
		res.DefiniteErrors += w.definite
		res.IndeterminateErrors += w.indeterminate
		res.LostInFlight += w.lostInFlight
		res.UnknownKeys = append(res.UnknownKeys, w.unknownKeys...)
		res.RefusedKeys = append(res.RefusedKeys, w.refusedKeys...)
		res.FailedKeysTruncated = res.FailedKeysTruncated || w.failedKeysTruncated
		res.Reconnects += w.reconnects
		if w.gaveUp {
			res.ConnsGivenUp++
		}
		res.Mismatches += w.mismatches
		res.Misses += w.misses
		res.Gateways[w.firstGateway].Conns++
		for i, g := range w.gateways {
			res.Gateways[i].ReconnectsTo += g.ReconnectsTo
			res.Gateways[i].LostConns += g.LostConns
			res.Gateways[i].LeftUnavailable += g.LeftUnavailable
			res.LeftUnavailable += g.LeftUnavailable
			res.Gateways[i].Resent += g.Resent
			res.Resent += g.Resent
			res.Gateways[i].Ops += g.Ops
			res.Gateways[i].Errors += g.Errors
		}
		all.Merge(w.setHist)
		all.Merge(w.getHist)
		sets.Merge(w.setHist)
		gets.Merge(w.getHist)
	}
	res.UnknownKeys, res.RefusedKeys = boundKeys(res.UnknownKeys, &res.FailedKeysTruncated), boundKeys(res.RefusedKeys, &res.FailedKeysTruncated)
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

// second returns the stats of the measured second at holds, or nil if at
// is before the measured phase. r.mu must be held.
func (r *run) second(at time.Time) *secondStats {
	sec := int(at.Sub(r.start) / time.Second)
	if sec < 0 {
		return nil
	}
	for len(r.perSecond) <= sec {
		r.perSecond = append(r.perSecond, &secondStats{hist: newHistogram()})
	}
	return r.perSecond[sec]
}

// record counts one measured reply in its second.
func (r *run) record(at time.Time, rtt time.Duration, failed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.second(at)
	if s == nil {
		return
	}
	s.ops++
	if failed {
		s.errors++
	}
	_ = s.hist.RecordValue(max(histMin, min(histMax, rtt.Microseconds())))
}

// recordLost counts one measured request lost in flight, as an error of
// its second.
func (r *run) recordLost(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.second(at); s != nil {
		s.errors++
	}
}

// worker drives one connection: a sender keeps up to depth requests in
// flight, a receiver checks replies in order. When the connection is lost
// it counts the requests in flight and reconnects.
type worker struct {
	r   *run
	f   *client.Failover
	rng *rand.Rand
	// want is the receiver's buffer for expected values.
	want []byte
	// nextOwnGet is, for setget, the key to read back next (-1: none).
	nextOwnGet int64
	// failedSet is, for setget, the key of the last SET that failed (-1:
	// none): its read-back may find nothing without that being wrong.
	failedSet int64
	// firstGateway is the index of the address the connection started on.
	firstGateway int
	// Written by the receiver only while a connection runs, by loop
	// between connections; read after the worker stopped.
	setHist, getHist               *hdrhistogram.Histogram
	sets, gets, errors, mismatches int64
	misses                         int64
	definite, indeterminate        int64
	// unknownKeys and refusedKeys are the keys of this worker's failed
	// SETs, by outcome (Result.UnknownKeys, Result.RefusedKeys).
	unknownKeys, refusedKeys []int64
	failedKeysTruncated      bool
	lostInFlight, reconnects int64
	gaveUp                   bool
	gateways                 []Gateway // per address; Addr and Conns unused
	// unavailable is set by the receiver when, with several addresses,
	// the gateway answered "gateway unavailable: ...": the connection
	// sends nothing more and moves on once its requests are answered.
	unavailable bool
	// refused are the requests so refused on the current connection, in
	// order (written by the receiver); loop moves them to resend when the
	// connection ends, and next sends those first on the next one.
	refused, resend []pending
	// leftInARow counts moves for that reason since a gateway last
	// served a request; a whole pass of the list pauses before the next.
	leftInARow int
}

type pending struct {
	get      bool
	key      int64
	sent     time.Time
	measured bool
	own      bool // a GET of a key this worker just stored (setget)
	refusals int  // times a gateway answered "gateway unavailable: ..."
}

func newWorker(r *run, f *client.Failover, seed uint64) *worker {
	return &worker{
		r: r, f: f,
		rng:          rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano()))),
		nextOwnGet:   -1,
		failedSet:    -1,
		firstGateway: f.Index(),
		setHist:      newHistogram(),
		getHist:      newHistogram(),
		gateways:     make([]Gateway, len(r.addrs)),
	}
}

// errUnavailable ends a connection whose gateway answered "gateway
// unavailable: ..." (see worker.unavailable).
var errUnavailable = errors.New("the gateway cannot serve (it runs no Raft)")

// loop runs connections until ctx ends or the op budget is spent. A lost
// connection is replaced by one to the next address, and so is one whose
// gateway refused requests because it runs no Raft (codec.GatewayUnavailable,
// with several addresses): the next gateway may serve them. A connection
// that fails otherwise, or finds no address to reconnect to, ends the
// worker.
func (w *worker) loop(ctx context.Context) {
	for {
		gateway := w.f.Index()
		var err error
		if w.r.cfg.Depth == 1 {
			err = w.lockstep(ctx, w.f.Client(), gateway)
		} else {
			err = w.pipeline(ctx, w.f.Client(), gateway)
		}
		// Both goroutines of the connection are done: what it refused
		// goes first on the next.
		w.resend = append(w.resend, w.refused...)
		w.refused = w.refused[:0]
		if err == nil || ctx.Err() != nil {
			return
		}
		addr := w.r.addrs[gateway]
		if errors.Is(err, errUnavailable) {
			if !w.leave(ctx, gateway) {
				return
			}
			continue
		}
		if !client.Lost(err) {
			w.r.fail(fmt.Errorf("connection to %s: %w", addr, err))
			return
		}
		w.r.fail(fmt.Errorf("connection to %s lost: %w", addr, err))
		w.gateways[gateway].LostConns++
		if !w.reconnect(ctx, "connection to "+addr+" lost") {
			return
		}
	}
}

// reconnect moves the connection to the next address that answers and
// counts the move; why says what ended the last one. False means no
// address answered (the worker gives up) or ctx ended.
func (w *worker) reconnect(ctx context.Context, why string) bool {
	if err := w.f.Reconnect(ctx); err != nil {
		if ctx.Err() == nil {
			w.gaveUp = true
			w.r.fail(fmt.Errorf("%s, and no address answered: %w", why, err))
		}
		return false
	}
	w.reconnects++
	w.gateways[w.f.Index()].ReconnectsTo++
	return true
}

// leave moves the connection from a gateway that answered "gateway
// unavailable: ..." to the next address. After a whole pass of the list
// with no request served it pauses first (the reconnect backoff), so a
// group whose gateways all cannot serve is not hammered. False means the
// worker is done.
func (w *worker) leave(ctx context.Context, gateway int) bool {
	w.unavailable = false
	w.gateways[gateway].LeftUnavailable++
	w.leftInARow++
	if w.leftInARow%len(w.r.addrs) == 0 {
		pause := time.NewTimer(w.r.cfg.reconnectBackoff())
		select {
		case <-pause.C:
		case <-ctx.Done():
			pause.Stop()
			return false
		}
	}
	return w.reconnect(ctx, "left "+w.r.addrs[gateway]+", which cannot serve")
}

// lockstep drives a connection without pipelining on one goroutine: send,
// wait for the reply, repeat. (Two goroutines handing every request over
// a channel would cost the machine CPU the cluster under test needs.) It
// returns the error that broke the connection, or nil when the run ends.
func (w *worker) lockstep(ctx context.Context, c *client.Client, gateway int) error {
	line := make([]byte, 0, w.r.cfg.Size+32)
	for ctx.Err() == nil {
		p, ok := w.next(&line)
		if !ok {
			return nil
		}
		if p.sent.IsZero() { // a request sent again keeps its first send time
			p.sent = time.Now()
		}
		err := c.Send(line)
		if err == nil {
			err = c.Flush()
		}
		var reply []byte
		if err == nil {
			reply, err = c.ReadReply()
		}
		if err != nil {
			w.lost(p, gateway)
			return err
		}
		w.check(p, reply, time.Now(), gateway)
		if w.unavailable {
			return errUnavailable
		}
	}
	return nil
}

// next picks the next request and writes its line into *line; false
// means the op budget is spent.
func (w *worker) next(line *[]byte) (pending, bool) {
	cfg := w.r.cfg
	if len(w.resend) > 0 {
		p := w.resend[0]
		w.resend = w.resend[1:]
		w.appendLine(line, p)
		return p, true
	}
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
	w.appendLine(line, p)
	return p, true
}

// appendLine writes p's request line into *line.
func (w *worker) appendLine(line *[]byte, p pending) {
	l := (*line)[:0]
	if p.get {
		l = append(l, "GET "...)
		l = strconv.AppendInt(l, p.key, 10)
	} else {
		l = append(l, "SET "...)
		l = strconv.AppendInt(l, p.key, 10)
		l = append(l, ' ')
		l = AppendValue(l, p.key, w.r.cfg.Size)
	}
	*line = l
}

// pipeline drives a connection with up to depth requests in flight: this
// goroutine sends, another reads the replies in order. It returns the
// error that broke the connection, or nil when the run ends; the requests
// in flight on a broken connection are counted as lost.
func (w *worker) pipeline(ctx context.Context, c *client.Client, gateway int) error {
	depth := w.r.cfg.Depth
	slots := make(chan struct{}, depth)   // one per request in flight: the window
	inflight := make(chan pending, depth) // the requests in flight, in send order
	failed := make(chan struct{})         // closed when the receiver fails
	stop := make(chan struct{})           // closed when the gateway cannot serve
	var recvErr error
	var unanswered []pending
	received := make(chan struct{})
	go func() {
		defer close(received)
		for p := range inflight {
			if recvErr != nil {
				unanswered = append(unanswered, p)
				continue
			}
			reply, err := c.ReadReply()
			now := time.Now()
			if err != nil {
				recvErr = err
				unanswered = append(unanswered, p)
				close(failed)
				// The sender may be blocked writing to a server that is gone.
				_ = c.Close()
				continue
			}
			<-slots
			stopped := w.unavailable
			w.check(p, reply, now, gateway)
			if w.unavailable && !stopped {
				close(stop) // the rest in flight are still read
			}
		}
	}()
	sendErr := w.send(ctx, c, slots, inflight, failed, stop)
	close(inflight)
	<-received
	// Both goroutines have stopped: the lost requests can be counted.
	for _, p := range unanswered {
		w.lost(p, gateway)
	}
	if recvErr != nil {
		return recvErr
	}
	if sendErr == nil && w.unavailable {
		return errUnavailable
	}
	return sendErr
}

// send issues pipelined requests until ctx ends, the op budget is spent,
// the receiver fails or stops it, or a write fails. A request goes into
// inflight before it is written, so the receiver accounts for every
// request sent; what is buffered is flushed unless the connection failed.
func (w *worker) send(ctx context.Context, c *client.Client, slots chan<- struct{}, inflight chan<- pending, failed, stop <-chan struct{}) error {
	line := make([]byte, 0, w.r.cfg.Size+32)
	for ctx.Err() == nil {
		select {
		case <-stop:
			return c.Flush()
		default:
		}
		// A full window: push what is buffered out before waiting for a
		// slot, or the server never sees it. The slot is taken before the
		// request is picked, so no request is picked and then dropped.
		select {
		case slots <- struct{}{}:
		default:
			if err := c.Flush(); err != nil {
				return err
			}
			select {
			case slots <- struct{}{}:
			case <-failed:
				return nil
			case <-stop:
				return c.Flush()
			case <-ctx.Done():
				return nil
			}
		}
		p, ok := w.next(&line)
		if !ok {
			break
		}
		if p.sent.IsZero() { // a request sent again keeps its first send time
			p.sent = time.Now()
		}
		inflight <- p // never blocks: the slots bound it
		if err := c.Send(line); err != nil {
			return err
		}
		if len(slots) == cap(slots) {
			if err := c.Flush(); err != nil {
				return err
			}
		}
	}
	return c.Flush()
}

// lost counts a request that was in flight on a lost connection: an error
// whose outcome is unknown for a SET (definite for a GET, which has no
// effect). It is not sent again.
func (w *worker) lost(p pending, gateway int) {
	w.errors++
	w.lostInFlight++
	w.gateways[gateway].Errors++
	if p.get {
		w.definite++
	} else {
		w.indeterminate++
		w.noteFailedSet(p.key, codec.Indeterminate)
		if w.nextOwnGet == p.key {
			w.nextOwnGet = -1 // nothing to read back for sure
		}
		w.failedSet = p.key
	}
	if !p.measured {
		return
	}
	now := time.Now()
	if end := w.r.stopAt.Load(); end != 0 && now.UnixNano() > end {
		return
	}
	w.r.done.Add(1)
	if w.r.cfg.Series {
		w.r.recordLost(now)
	}
}

// check verifies one reply and records it.
func (w *worker) check(p pending, reply []byte, now time.Time, gateway int) {
	cfg := w.r.cfg
	rtt := now.Sub(p.sent)
	if end := w.r.stopAt.Load(); end != 0 && now.UnixNano() > end {
		p.measured = false // answered after the measured phase: check, do not count
	}
	failed := false
	isError := len(reply) >= len(codec.ErrorPrefix) && string(reply[:len(codec.ErrorPrefix)]) == codec.ErrorPrefix
	if isError && codec.GatewayUnavailable(string(reply)) && len(w.r.addrs) > 1 {
		w.unavailable = true
		if p.refusals+1 < len(w.r.addrs) {
			// Not run: the next gateway gets it (worker.refused).
			p.refusals++
			w.refused = append(w.refused, p)
			w.gateways[gateway].Resent++
			return
		}
		// As many refusals as gateways: an error (below).
	} else {
		w.leftInARow = 0 // this gateway serves
	}
	switch {
	case isError:
		failed = true
		w.failedReply(p, gateway, codec.ClassifyError(string(reply)))
		w.r.fail(fmt.Errorf("server: %s", reply))
	case p.get && string(reply) == codec.ReplyNotFound:
		switch {
		case p.own && p.key != w.failedSet:
			w.mismatches++ // a key this connection just stored
			w.r.fail(fmt.Errorf("GET %d right after SET: NOT_FOUND", p.key))
		case p.measured:
			w.misses++
		}
	case p.get:
		w.want = AppendValue(w.want[:0], p.key, cfg.Size)
		if string(reply) != string(w.want) {
			w.mismatches++
			w.r.fail(fmt.Errorf("GET %d: got %q", p.key, clip(reply)))
		}
	case string(reply) != codec.ReplyOK:
		// Neither OK nor an error: what the SET did is unknown.
		failed = true
		w.failedReply(p, gateway, codec.Indeterminate)
		w.r.fail(fmt.Errorf("SET %d: %q", p.key, clip(reply)))
	}
	if !p.measured {
		return
	}
	w.gateways[gateway].Ops++
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

// failedReply counts a request answered with an error.
func (w *worker) failedReply(p pending, gateway int, outcome codec.Outcome) {
	w.errors++
	w.gateways[gateway].Errors++
	if outcome == codec.Definite {
		w.definite++
	} else {
		w.indeterminate++
	}
	if !p.get {
		w.failedSet = p.key
		w.noteFailedSet(p.key, outcome)
	}
}

// noteFailedSet keeps the key of a failed SET in the list of its outcome.
func (w *worker) noteFailedSet(key int64, outcome codec.Outcome) {
	list := &w.unknownKeys
	if outcome == codec.Definite {
		list = &w.refusedKeys
	}
	if len(*list) >= MaxFailedKeys {
		w.failedKeysTruncated = true
		return
	}
	*list = append(*list, key)
}

// boundKeys sorts keys and keeps the first MaxFailedKeys, setting
// *truncated if it drops any.
func boundKeys(keys []int64, truncated *bool) []int64 {
	slices.Sort(keys)
	if len(keys) > MaxFailedKeys {
		*truncated = true
		keys = keys[:MaxFailedKeys]
	}
	return keys
}

func clip(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}
