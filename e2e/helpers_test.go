package e2e

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tolerex/tolerex/actors/leader"
	"github.com/tolerex/tolerex/gateway/client"
)

// ledger records what the cluster acknowledged: the value of every id
// whose last operation got OK, and the ids whose last acknowledged
// operation was a DEL.
type ledger struct {
	mu      sync.Mutex
	values  map[int64]string
	deleted map[int64]bool
}

func newLedger() *ledger {
	return &ledger{values: make(map[int64]string), deleted: make(map[int64]bool)}
}

func (l *ledger) set(id int64, v string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.values[id] = v
	delete(l.deleted, id)
}

func (l *ledger) del(id int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.values, id)
	l.deleted[id] = true
}

func (l *ledger) snapshot() (map[int64]string, map[int64]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	values := make(map[int64]string, len(l.values))
	for k, v := range l.values {
		values[k] = v
	}
	deleted := make(map[int64]bool, len(l.deleted))
	for k := range l.deleted {
		deleted[k] = true
	}
	return values, deleted
}

// verify reads every acknowledged id back and fails the test on any
// difference.
func (l *ledger) verify(t *testing.T, cl *client.Client) {
	t.Helper()
	values, deleted := l.snapshot()
	bad := 0
	for id, want := range values {
		got, found, err := cl.Get(id)
		if err != nil || !found || string(got) != want {
			bad++
			if bad <= 10 {
				t.Errorf("GET %d = %q found=%v err=%v, want %q", id, got, found, err, want)
			}
		}
	}
	for id := range deleted {
		if got, found, err := cl.Get(id); err != nil || found {
			bad++
			if bad <= 10 {
				t.Errorf("GET %d of a deleted id = %q found=%v err=%v, want NOT_FOUND", id, got, found, err)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d acknowledged ids read back wrong", bad, len(values)+len(deleted))
	}
}

// pipelineSet stores ids [from, to) with value prefix+id using the
// pipelined client API and records them in the ledger.
func pipelineSet(t *testing.T, cl *client.Client, led *ledger, from, to int64, prefix string) {
	t.Helper()
	const window = 256
	errs := make(chan error, 1)
	go func() {
		for id := from; id < to; id++ {
			if err := cl.Send([]byte("SET " + strconv.FormatInt(id, 10) + " " + prefix + strconv.FormatInt(id, 10))); err != nil {
				errs <- err
				return
			}
			if (id-from)%window == window-1 {
				if err := cl.Flush(); err != nil {
					errs <- err
					return
				}
			}
		}
		errs <- cl.Flush()
	}()
	for id := from; id < to; id++ {
		reply, err := cl.ReadReply()
		if err != nil {
			t.Fatalf("reply to SET %d: %v", id, err)
		}
		if string(reply) != "OK" {
			t.Fatalf("SET %d: %q", id, reply)
		}
		led.set(id, prefix+strconv.FormatInt(id, 10))
	}
	if err := <-errs; err != nil {
		t.Fatalf("send: %v", err)
	}
}

// opResult is the outcome of one client operation under load.
type opResult struct {
	op      string
	id      int64
	err     error
	started time.Time
	took    time.Duration
}

// loadGenerator runs workers that SET fresh ids and GET acknowledged ones
// until ctx ends, recording every result.
type loadGenerator struct {
	c       *Cluster
	led     *ledger
	mu      sync.Mutex
	results []opResult
	wg      sync.WaitGroup
}

func (g *loadGenerator) start(ctx context.Context, t *testing.T, workers int, firstID int64) {
	for w := 0; w < workers; w++ {
		cl := g.c.Dial(t)
		g.wg.Add(1)
		go func(w int) {
			defer g.wg.Done()
			id := firstID + int64(w)*1_000_000
			for i := 0; ctx.Err() == nil; i++ {
				start := time.Now()
				if i%3 == 2 {
					readID := id - 1
					v, found, err := cl.Get(readID)
					if err == nil && (!found || string(v) != fmt.Sprintf("load-%d", readID)) {
						err = fmt.Errorf("GET %d = %q found=%v", readID, v, found)
					}
					g.record(opResult{op: "GET", id: readID, err: err, started: start, took: time.Since(start)})
					continue
				}
				value := fmt.Sprintf("load-%d", id)
				err := cl.Set(id, []byte(value))
				g.record(opResult{op: "SET", id: id, err: err, started: start, took: time.Since(start)})
				if err == nil {
					g.led.set(id, value)
				} else {
					var se *client.ServerError
					if !errors.As(err, &se) {
						return // the connection is broken; stop this worker
					}
				}
				id++
			}
		}(w)
	}
}

func (g *loadGenerator) record(r opResult) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.results = append(g.results, r)
}

// snapshot returns the results recorded so far.
func (g *loadGenerator) snapshot() []opResult {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]opResult(nil), g.results...)
}

func (g *loadGenerator) wait() []opResult {
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]opResult(nil), g.results...)
}

// waitMemberAlive waits until the gateway reports the member with the
// given node address alive or not.
func waitMemberAlive(t *testing.T, c *Cluster, nodeAddr string, alive bool, limit time.Duration) leader.MemberStatus {
	t.Helper()
	var found leader.MemberStatus
	Eventually(t, limit, fmt.Sprintf("member %s alive=%v", nodeAddr, alive), func() (bool, string) {
		members := c.Status(t).Members
		for _, m := range members {
			if m.NodeAddress == nodeAddr && m.Alive == alive && (!alive || m.StorageReady) {
				found = m
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", members)
	})
	return found
}

// location returns where the gateway says a message is stored.
func location(t *testing.T, c *Cluster, id int64) leader.Location {
	t.Helper()
	var loc leader.Location
	c.Gateway.GetJSON(t, "/api/messages/"+strconv.FormatInt(id, 10), &loc)
	return loc
}
