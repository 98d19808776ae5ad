package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tolerex/tolerex/gateway/codec"
)

// store is the data the fake gateways of one test share, as the gateways
// of a group do.
type store struct {
	mu       sync.Mutex
	messages map[int64]string
}

func newStore() *store { return &store{messages: make(map[int64]string)} }

// fakeGateway is a no-prompt HaToKuSe server on a real listener on
// 127.0.0.1. With dieAfter > 0 it dies, as a killed process does, once it
// has answered that many requests (handshakes included): it stops
// listening and closes every connection, with requests in flight
// unanswered.
type fakeGateway struct {
	addr     string
	store    *store
	dieAfter int
	// reply, when set, answers SETs instead of the store.
	reply func(codec.Command) string

	listener net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
	answered int
	dead     bool
}

func startGateway(t *testing.T, g *fakeGateway) *fakeGateway {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.listener, g.addr = listener, listener.Addr().String()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			g.mu.Lock()
			if g.dead {
				g.mu.Unlock()
				_ = conn.Close()
				continue
			}
			g.conns = append(g.conns, conn)
			g.mu.Unlock()
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				defer conn.Close()
				g.serve(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		g.kill()
		g.wg.Wait()
	})
	return g
}

func (g *fakeGateway) kill() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dead {
		return
	}
	g.dead = true
	_ = g.listener.Close()
	for _, conn := range g.conns {
		_ = conn.Close()
	}
}

// count counts one answered request and reports whether the gateway is
// to die now, before writing the reply.
func (g *fakeGateway) count() (die bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.answered++
	return g.dieAfter > 0 && g.answered > g.dieAfter
}

func (g *fakeGateway) serve(conn net.Conn) {
	reader := bufio.NewReader(conn)
	writer := bufio.NewWriter(conn)
	for {
		line, err := reader.ReadBytes('\n')
		if err != nil {
			return
		}
		if g.count() {
			_ = writer.Flush()
			g.kill()
			return
		}
		command := codec.Parse(line)
		reply := codec.ReplyPong
		switch command.Kind {
		case codec.KindSet:
			if g.reply != nil {
				reply = g.reply(command)
				break
			}
			g.store.mu.Lock()
			g.store.messages[command.ID] = string(command.Message)
			g.store.mu.Unlock()
			reply = codec.ReplyOK
		case codec.KindGet:
			g.store.mu.Lock()
			message, ok := g.store.messages[command.ID]
			g.store.mu.Unlock()
			reply = codec.ReplyNotFound
			if ok {
				reply = message
			}
		}
		writer.WriteString(reply + codec.LineEnd)
		buffered, _ := reader.Peek(reader.Buffered())
		if bytes.IndexByte(buffered, '\n') < 0 && writer.Flush() != nil {
			return
		}
	}
}

func addrsOf(gws ...*fakeGateway) []string {
	var out []string
	for _, g := range gws {
		out = append(out, g.addr)
	}
	return out
}

// TestConnectionsSpreadRoundRobin: 6 connections over 3 gateways, 2 on
// each, every request answered and counted where it was answered.
func TestConnectionsSpreadRoundRobin(t *testing.T) {
	s := newStore()
	gws := []*fakeGateway{startGateway(t, &fakeGateway{store: s}), startGateway(t, &fakeGateway{store: s}), startGateway(t, &fakeGateway{store: s})}
	res, err := Run(context.Background(), Config{Addrs: addrsOf(gws...), Conns: 6, Depth: 2, Op: OpSetGet, Size: 20, Ops: 600, Keys: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed() || res.Reconnects != 0 || res.LostInFlight != 0 {
		t.Fatalf("clean run: %+v", res)
	}
	var ops int64
	for i, g := range res.Gateways {
		if g.Addr != gws[i].addr || g.Conns != 2 || g.Ops == 0 || g.LostConns != 0 {
			t.Errorf("gateway %d: %+v, want 2 connections answering requests", i, g)
		}
		ops += g.Ops
	}
	if ops != res.Ops {
		t.Errorf("per-gateway ops add up to %d, want %d", ops, res.Ops)
	}
}

// TestLostGatewayConnectionsMoveOn kills one of three gateways in the
// middle of a run: its connections count what they had in flight as lost
// (indeterminate SETs), reconnect to the next gateway and go on; nothing
// is read wrong.
func TestLostGatewayConnectionsMoveOn(t *testing.T) {
	for _, tc := range []struct {
		name  string
		op    Op
		depth int
	}{
		{"set lockstep", OpSet, 1},
		{"set pipelined", OpSet, 8},
		{"setget pipelined", OpSetGet, 4},
		{"setget lockstep", OpSetGet, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore()
			gws := []*fakeGateway{
				startGateway(t, &fakeGateway{store: s}),
				startGateway(t, &fakeGateway{store: s, dieAfter: 300}),
				startGateway(t, &fakeGateway{store: s}),
			}
			const conns = 6
			res, err := Run(context.Background(), Config{Addrs: addrsOf(gws...), Conns: conns, Depth: tc.depth, Op: tc.op,
				Size: 20, Ops: 3000, Keys: 1_000_000, ReconnectBackoff: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			dead := res.Gateways[1]
			if dead.Conns != 2 || dead.LostConns != 2 || dead.ReconnectsTo != 0 {
				t.Errorf("dead gateway: %+v, want its 2 connections lost", dead)
			}
			if res.Reconnects != 2 || res.Gateways[2].ReconnectsTo != 2 || res.ConnsGivenUp != 0 {
				t.Errorf("%d reconnects, %d to the next gateway, %d given up; want 2, 2, 0", res.Reconnects, res.Gateways[2].ReconnectsTo, res.ConnsGivenUp)
			}
			if res.LostInFlight < 1 || res.LostInFlight > 2*int64(tc.depth) {
				t.Errorf("%d lost in flight, want 1 to %d (the window of 2 connections)", res.LostInFlight, 2*tc.depth)
			}
			// Lost SETs are indeterminate; a lost GET (setget) is definite.
			if res.Errors != res.LostInFlight || res.Errors != res.DefiniteErrors+res.IndeterminateErrors ||
				(tc.op == OpSet && res.DefiniteErrors != 0) {
				t.Errorf("errors %d (definite %d, indeterminate %d), lost %d: want only lost ones, SETs indeterminate",
					res.Errors, res.DefiniteErrors, res.IndeterminateErrors, res.LostInFlight)
			}
			if int64(len(res.UnknownKeys)) != res.IndeterminateErrors || int64(len(res.RefusedKeys)) != res.DefiniteErrors-lostGets(tc.op, res) {
				t.Errorf("unknown keys %v, refused keys %v; want one per indeterminate SET and one per definite SET error", res.UnknownKeys, res.RefusedKeys)
			}
			if dead.Errors != res.Errors || res.Gateways[0].Errors != 0 {
				t.Errorf("errors by gateway %+v, want all on the dead one", res.Gateways)
			}
			if res.Mismatches != 0 {
				t.Errorf("%d mismatches (%s): a lost SET's read-back counts as wrong", res.Mismatches, res.FirstError)
			}
			if res.Ops+res.LostInFlight < 3000 {
				t.Errorf("%d answered + %d lost, want the budget of 3000 spent", res.Ops, res.LostInFlight)
			}
			if !strings.Contains(res.FirstError, "connection to "+gws[1].addr+" lost") {
				t.Errorf("first error %q, want the lost connection", res.FirstError)
			}
		})
	}
}

// unavailable answers every SET as a gateway that runs no Raft does.
func unavailable(codec.Command) string {
	return "ERROR: " + codec.UnavailablePrefix + "disk full: test"
}

// TestUnavailableGatewayConnectionsMoveOn: one of three gateways refuses
// every SET with "gateway unavailable: ..." (it runs no Raft, or it is
// shutting down): nothing ran. Its connections read what they had in
// flight, move on to the next gateway and send the refused SETs again
// there: no error, and every key of the run is stored.
func TestUnavailableGatewayConnectionsMoveOn(t *testing.T) {
	for _, depth := range []int{1, 8} {
		t.Run(fmt.Sprintf("depth %d", depth), func(t *testing.T) {
			s := newStore()
			gws := []*fakeGateway{
				startGateway(t, &fakeGateway{store: s}),
				startGateway(t, &fakeGateway{store: s, reply: unavailable}),
				startGateway(t, &fakeGateway{store: s}),
			}
			res, err := Run(context.Background(), Config{Addrs: addrsOf(gws...), Conns: 6, Depth: depth, Op: OpSet,
				Size: 20, Ops: 3000, Keys: 1_000_000, Warmup: 0, ReconnectBackoff: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			refusing := res.Gateways[1]
			if refusing.LeftUnavailable != 2 || res.LeftUnavailable != 2 || res.Reconnects != 2 ||
				res.Gateways[2].ReconnectsTo != 2 || res.ConnsGivenUp != 0 || res.LostInFlight != 0 {
				t.Errorf("result %+v, want the refusing gateway's 2 connections moved to the next one", res)
			}
			// Each of its connections had 1 to depth+1 requests refused: the
			// window, and one the sender may slip in as the first refusal
			// frees its slot.
			if refusing.Resent < 2 || refusing.Resent > 2*int64(depth+1) || res.Resent != refusing.Resent ||
				res.Errors != 0 || refusing.Ops != 0 {
				t.Errorf("%d errors, %d sent again (%d refused by the refusing gateway, which answered %d); want no error and 2 to %d sent again",
					res.Errors, res.Resent, refusing.Resent, refusing.Ops, 2*(depth+1))
			}
			// Which gateway answers more is up to scheduling; that the
			// moved connections were served there is not.
			if res.Ops != 3000 || res.Gateways[2].Ops == 0 ||
				res.Gateways[0].Ops+res.Gateways[2].Ops != res.Ops {
				t.Errorf("answered %d (by gateway %+v), want the budget of 3000 spent, gateway 3 serving", res.Ops, res.Gateways)
			}
			// Keys are handed out in order: the refused ones too are stored.
			s.mu.Lock()
			defer s.mu.Unlock()
			for key := range int64(3000) {
				if _, ok := s.messages[key]; !ok {
					t.Fatalf("key %d not stored (%d keys stored): a refused SET was not sent again", key, len(s.messages))
				}
			}
		})
	}
}

// TestEveryGatewayUnavailable: no gateway can serve. The connections
// move on around the list, pausing after each pass; each request is sent
// to both gateways, then counted as a definite error, until the run ends.
// With one address they stay, and every refusal is an error.
func TestEveryGatewayUnavailable(t *testing.T) {
	s := newStore()
	gws := []*fakeGateway{startGateway(t, &fakeGateway{store: s, reply: unavailable}), startGateway(t, &fakeGateway{store: s, reply: unavailable})}
	const backoff = 100 * time.Millisecond
	res, err := Run(context.Background(), Config{Addrs: addrsOf(gws...), Conns: 2, Depth: 1, Op: OpSet, Size: 10,
		Duration: time.Second, Keys: 1000, ReconnectBackoff: backoff})
	if err != nil {
		t.Fatal(err)
	}
	// Each connection moves twice per pause: at most 2 x (1 s / 100 ms + 1) moves.
	if max := int64(2 * 2 * (time.Second/backoff + 1)); res.LeftUnavailable < 4 || res.LeftUnavailable > max ||
		res.ConnsGivenUp != 0 || res.Errors != res.DefiniteErrors || res.Errors < 2 ||
		res.Resent < res.Errors || res.Resent > res.Errors+2 || res.Errors+res.Resent != res.LeftUnavailable {
		t.Errorf("result %+v, want 4 to %d moves, each a refusal: every request sent again once, then a definite error", res, max)
	}
	one, err := Run(context.Background(), Config{Addr: gws[0].addr, Conns: 2, Depth: 4, Op: OpSet, Size: 10, Ops: 200, Keys: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if one.LeftUnavailable != 0 || one.Reconnects != 0 || one.Errors < 200 || one.DefiniteErrors != one.Errors {
		t.Errorf("one address: %+v, want it kept, every SET a definite error", one)
	}
}

// TestEveryGatewayDead: the only gateway dies; the connections find
// nowhere to go, give up, and the run ends without waiting out its
// duration.
func TestEveryGatewayDead(t *testing.T) {
	g := startGateway(t, &fakeGateway{store: newStore(), dieAfter: 100})
	start := time.Now()
	res, err := Run(context.Background(), Config{Addr: g.addr, Conns: 3, Depth: 1, Op: OpSet, Size: 10,
		Duration: time.Minute, Keys: 1000, ReconnectBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed > 30*time.Second {
		t.Errorf("run took %v after every connection gave up", elapsed)
	}
	if res.ConnsGivenUp != 3 || res.Reconnects != 0 || res.Gateways[0].LostConns != 3 || !res.Failed() {
		t.Errorf("result %+v, want 3 connections lost and given up", res)
	}
	if !strings.Contains(res.FirstError, "no server answered at "+g.addr) && !strings.Contains(res.FirstError, "lost") {
		t.Errorf("first error %q", res.FirstError)
	}
}

// TestErrorsByOutcome: error replies are split with codec.ClassifyError.
func TestErrorsByOutcome(t *testing.T) {
	reply := func(c codec.Command) string {
		if c.ID%2 == 0 {
			return "ERROR: not enough live members: 1 live, tolerance 2"
		}
		return "ERROR: outcome unknown: no leader confirmed this request before its deadline"
	}
	g := startGateway(t, &fakeGateway{store: newStore(), reply: reply})
	res, err := Run(context.Background(), Config{Addr: g.addr, Conns: 1, Depth: 4, Op: OpSet, Size: 10, Ops: 100, Keys: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// Errors count the requests before the measured phase too, so a few
	// more than Ops; the keys alternate, so the halves are near equal.
	if res.Errors < 100 || res.DefiniteErrors+res.IndeterminateErrors != res.Errors ||
		res.DefiniteErrors < 50 || res.IndeterminateErrors < 50 || res.LostInFlight != 0 {
		t.Errorf("errors %d, definite %d, indeterminate %d, lost %d; want at least 100, half each, none lost",
			res.Errors, res.DefiniteErrors, res.IndeterminateErrors, res.LostInFlight)
	}
	// Each failed SET's key is listed by its outcome: even keys refused,
	// odd ones unknown.
	if int64(len(res.RefusedKeys)) != res.DefiniteErrors || int64(len(res.UnknownKeys)) != res.IndeterminateErrors {
		t.Errorf("%d refused and %d unknown keys, want %d and %d", len(res.RefusedKeys), len(res.UnknownKeys), res.DefiniteErrors, res.IndeterminateErrors)
	}
	for _, k := range res.RefusedKeys {
		if k%2 != 0 {
			t.Errorf("refused keys %v: %d was answered with an indeterminate error", res.RefusedKeys, k)
			break
		}
	}
	for _, k := range res.UnknownKeys {
		if k%2 != 1 {
			t.Errorf("unknown keys %v: %d was answered with a definite error", res.UnknownKeys, k)
			break
		}
	}
	if !slices.IsSorted(res.UnknownKeys) || !slices.IsSorted(res.RefusedKeys) {
		t.Errorf("keys not sorted: unknown %v, refused %v", res.UnknownKeys, res.RefusedKeys)
	}
}

// lostGets is how many of a run's definite errors are GETs lost in flight
// (setget): they are errors without a failed SET.
func lostGets(op Op, res *Result) int64 {
	if op != OpSetGet {
		return 0
	}
	return res.DefiniteErrors
}

func TestValidateAddresses(t *testing.T) {
	cfg := Config{Conns: 1, Depth: 1, Op: OpSet, Size: 1, Keys: 1, Ops: 1}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "no address") {
		t.Errorf("no address: %v", err)
	}
	cfg.Addrs = []string{"127.0.0.1:1"}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Addrs alone: %v", err)
	}
}
