// Package workload drives the fault suite's clients: K concurrent
// HaToKuSe clients, each with one request at a time on its own
// connection, spread over all gateways, doing SET, GET and DEL on a small
// set of ids so that operations contend, every SET with a value never used
// before. Every call and return goes to a history.Recorder with its
// outcome classified honestly: a timeout, a dropped connection or an
// indeterminate error reply is Unknown, and the client then continues as a
// new process on a new connection.
package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tolerex/tolerex/cluster/local/poll"
	"github.com/tolerex/tolerex/e2e/chaos/history"
	"github.com/tolerex/tolerex/gateway/client"
	"github.com/tolerex/tolerex/gateway/codec"
)

// Config configures a workload.
type Config struct {
	// Addrs are the gateways' HaToKuSe addresses; client i starts on
	// Addrs[i % len] and moves to the next one after every reconnect: after
	// an operation of unknown outcome, and after a "gateway unavailable:
	// ..." refusal (definite: the operation is recorded as failed, not
	// sent again).
	Addrs []string
	// Clients is the number of concurrent clients.
	Clients int
	// Keys is the number of ids, 1..Keys.
	Keys int
	// Rate bounds the operations started per second over all clients
	// (0: no bound).
	Rate float64
	// SetPercent and DelPercent are the shares of SET and DEL; the rest
	// are GETs.
	SetPercent, DelPercent int
	// OpTimeout bounds one operation; past it, the outcome is unknown.
	OpTimeout time.Duration
	// DialTimeout bounds connecting (and the PING handshake).
	DialTimeout time.Duration
	// Seed seeds the clients' choices of operation and id.
	Seed     uint64
	Recorder *history.Recorder
}

// Stats counts what the workload saw besides operations.
type Stats struct {
	// DialFailures counts connection attempts that failed; no request was
	// sent on them.
	DialFailures int64 `json:"dial_failures"`
}

// Workload runs clients and final reads against one cluster.
type Workload struct {
	cfg       Config
	processes atomic.Int64
	dials     atomic.Int64
}

// New checks cfg and returns a Workload.
func New(cfg Config) (*Workload, error) {
	switch {
	case len(cfg.Addrs) == 0:
		return nil, errors.New("workload: no gateway addresses")
	case cfg.Clients < 1 || cfg.Keys < 1:
		return nil, fmt.Errorf("workload: %d clients on %d ids", cfg.Clients, cfg.Keys)
	case cfg.SetPercent < 0 || cfg.DelPercent < 0 || cfg.SetPercent+cfg.DelPercent > 100:
		return nil, fmt.Errorf("workload: SET %d%% and DEL %d%%", cfg.SetPercent, cfg.DelPercent)
	case cfg.OpTimeout <= 0 || cfg.DialTimeout <= 0:
		return nil, errors.New("workload: timeouts must be positive")
	case cfg.Recorder == nil:
		return nil, errors.New("workload: no recorder")
	}
	return &Workload{cfg: cfg}, nil
}

// Stats returns the counts so far.
func (w *Workload) Stats() Stats { return Stats{DialFailures: w.dials.Load()} }

// Run runs the clients until ctx ends. A client finishes the operation it
// is in (within OpTimeout) before it stops, so no outcome is made unknown
// by stopping.
func (w *Workload) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range w.cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.client(ctx, i)
		}()
	}
	wg.Wait()
}

// session is one client's connection and the process it speaks for.
type session struct {
	w       *Workload
	client  int
	process int
	conn    *client.Client
	addr    string
	next    int // index of the next address to dial
}

func (s *session) close() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// connect dials the next gateway, or returns false after a failed try.
func (s *session) connect(ctx context.Context) bool {
	addrs := s.w.cfg.Addrs
	s.addr = addrs[s.next%len(addrs)]
	s.next++
	dctx, cancel := context.WithTimeout(ctx, s.w.cfg.DialTimeout)
	defer cancel()
	conn, err := client.Dial(dctx, s.addr, client.Options{DialTimeout: s.w.cfg.DialTimeout, IOTimeout: s.w.cfg.OpTimeout})
	if err != nil {
		s.w.dials.Add(1)
		return false
	}
	s.conn = conn
	return true
}

func (w *Workload) newProcess() int { return int(w.processes.Add(1)) - 1 }

func (w *Workload) client(ctx context.Context, i int) {
	rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(i)+1))
	s := &session{w: w, client: i, process: w.newProcess(), next: i}
	defer s.close()
	var interval time.Duration
	if w.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(w.cfg.Clients) / w.cfg.Rate)
	}
	next := time.Now()
	seq := 0
	for ctx.Err() == nil {
		// Pacing and backoff are timers, not synchronisation.
		if wait := time.Until(next); wait > 0 {
			if !sleep(ctx, wait) {
				return
			}
		}
		next = time.Now().Add(interval)
		if s.conn == nil && !s.connect(ctx) {
			next = time.Now().Add(max(interval, 100*time.Millisecond))
			continue
		}
		op := history.Op{Client: i, ID: int64(1 + rng.IntN(w.cfg.Keys))}
		switch p := rng.IntN(100); {
		case p < w.cfg.SetPercent:
			seq++
			op.Kind, op.Value = history.Set, fmt.Sprintf("c%d-%d", i, seq)
		case p < w.cfg.SetPercent+w.cfg.DelPercent:
			op.Kind = history.Del
		default:
			op.Kind = history.Get
		}
		s.do(op)
	}
}

// do runs one operation on the session's connection and records it.
func (s *session) do(op history.Op) history.Op {
	rec := s.w.cfg.Recorder
	op.Process, op.Gateway = s.process, s.addr
	op.Call = rec.Now()
	var err error
	switch op.Kind {
	case history.Set:
		err = s.conn.Set(op.ID, []byte(op.Value))
		if err == nil {
			op.Status = history.OK
		}
	case history.Get:
		var value []byte
		var found bool
		value, found, err = s.conn.Get(op.ID)
		switch {
		case err != nil:
		case found:
			op.Status, op.Value = history.Found, string(value)
		default:
			op.Status = history.NotFound
		}
	case history.Del:
		var found bool
		found, err = s.conn.Del(op.ID)
		switch {
		case err != nil:
		case found:
			op.Status = history.OK
		default:
			op.Status = history.NotFound
		}
	}
	op.Return = rec.Now()
	if err != nil {
		op.Status, op.Error = classify(err)
	}
	rec.Add(op)
	switch {
	case op.Status == history.Unknown:
		// The connection's state is unknown too: continue as a new
		// process on a new connection.
		s.close()
		s.process = s.w.newProcess()
	case op.Status == history.Failed && codec.GatewayUnavailable(op.Error):
		// The gateway runs no Raft or is shutting down: move on to the
		// next one, as a client with a list of gateways does.
		s.close()
	}
	return op
}

// classify turns an operation's error into its status: a definite error
// reply is Failed, anything else (an indeterminate reply, a timeout, a
// broken connection, a reply that makes no sense) is Unknown.
func classify(err error) (history.Status, string) {
	var se *client.ServerError
	if errors.As(err, &se) {
		if codec.ClassifyError(se.Reply) == codec.Definite {
			return history.Failed, se.Reply
		}
		return history.Unknown, se.Reply
	}
	return history.Unknown, err.Error()
}

// FinalRead reads every id once more with a definite answer, within
// limit: an attempt that fails is recorded and retried on a new
// connection. It fails if some id gets no definite answer in time.
func (w *Workload) FinalRead(ctx context.Context, limit time.Duration) error {
	s := &session{w: w, client: w.cfg.Clients, process: w.newProcess()}
	defer s.close()
	for id := 1; id <= w.cfg.Keys; id++ {
		err := poll.Until(ctx, limit, 200*time.Millisecond, fmt.Sprintf("final read of id %d", id), func() (bool, error) {
			if s.conn == nil && !s.connect(ctx) {
				return false, fmt.Errorf("cannot connect to %s", s.addr)
			}
			op := s.do(history.Op{Client: w.cfg.Clients, Kind: history.Get, ID: int64(id), Final: true})
			if !op.Status.Succeeded() {
				s.close()
				return false, errors.New(op.Error)
			}
			return true, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
