package workload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tolerex/tolerex/e2e/chaos/history"
	"github.com/tolerex/tolerex/e2e/chaos/model"
	"github.com/tolerex/tolerex/gateway/client"
)

// fakeServer is a HaToKuSe server (no-prompt mode) over a map, with a
// fault to plant.
type fakeServer struct {
	mu     sync.Mutex
	values map[int64]string
	sets   int
	fault  string // "", "lose-every-3rd-set", "hang-on-set", "indeterminate-set"
	l      net.Listener
}

func startFake(t *testing.T, fault string) *fakeServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{values: make(map[int64]string), fault: fault, l: l}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *fakeServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		reply, ok := s.handle(strings.TrimRight(line, "\r\n"))
		if !ok {
			_, _ = io.Copy(io.Discard, r) // hang: read on, never answer
			return
		}
		if _, err := c.Write([]byte(reply + "\r\n")); err != nil {
			return
		}
	}
}

func (s *fakeServer) handle(line string) (string, bool) {
	f := strings.SplitN(line, " ", 3)
	s.mu.Lock()
	defer s.mu.Unlock()
	var id int64
	if len(f) > 1 {
		fmt.Sscan(f[1], &id)
	}
	switch f[0] {
	case "PING":
		return "PONG", true
	case "SET":
		s.sets++
		switch {
		case s.fault == "hang-on-set":
			return "", false
		case s.fault == "indeterminate-set" && s.sets%2 == 0:
			s.values[id] = f[2]
			return "ERROR: internal error in the leader; the outcome of this request is unknown", true
		case s.fault == "lose-every-3rd-set" && s.sets%3 == 0:
			return "OK", true
		}
		s.values[id] = f[2]
		return "OK", true
	case "GET":
		if v, ok := s.values[id]; ok {
			return v, true
		}
		return "NOT_FOUND", true
	case "DEL":
		if _, ok := s.values[id]; ok {
			delete(s.values, id)
			return "OK", true
		}
		return "NOT_FOUND", true
	}
	return "ERROR: unknown command", true
}

func run(t *testing.T, fault string, d time.Duration) ([]history.Op, *Workload) {
	t.Helper()
	s := startFake(t, fault)
	rec := history.NewRecorder()
	w, err := New(Config{
		Addrs: []string{s.l.Addr().String()}, Clients: 4, Keys: 3, SetPercent: 50, DelPercent: 10,
		OpTimeout: 200 * time.Millisecond, DialTimeout: time.Second, Seed: 1, Recorder: rec, Rate: 2000,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	w.Run(ctx)
	if err := w.FinalRead(context.Background(), 5*time.Second); err != nil && fault != "hang-on-set" {
		t.Fatal(err)
	}
	return rec.Ops(), w
}

func TestCorrectServerIsLinearizable(t *testing.T) {
	ops, _ := run(t, "", 500*time.Millisecond)
	kinds := map[history.Kind]int{}
	finals := 0
	for _, op := range ops {
		kinds[op.Kind]++
		if !op.Status.Succeeded() {
			t.Errorf("operation without a definite answer: %s", op)
		}
		if op.Final {
			finals++
		}
		if op.Return < op.Call {
			t.Errorf("returned before its call: %s", op)
		}
	}
	if kinds[history.Set] < 20 || kinds[history.Get] < 20 || kinds[history.Del] < 2 {
		t.Errorf("operations by kind: %v", kinds)
	}
	if finals != 3 {
		t.Errorf("%d final reads, want 3", finals)
	}
	if r := model.Check(ops, 30*time.Second); r.Verdict != model.Linearizable {
		t.Errorf("verdict %s on a correct server (ids %v)", r.Verdict, r.BadIDs)
	}
}

func TestLostWritesAreFound(t *testing.T) {
	ops, _ := run(t, "lose-every-3rd-set", 500*time.Millisecond)
	if r := model.Check(ops, 30*time.Second); r.Verdict != model.NotLinearizable {
		t.Errorf("verdict %s on a server that loses acknowledged writes", r.Verdict)
	}
}

// TestIndeterminateRepliesAreUnknown: an indeterminate error is Unknown,
// the client moves to a new process, and the history stays linearizable
// (the writes did happen).
func TestIndeterminateRepliesAreUnknown(t *testing.T) {
	ops, _ := run(t, "indeterminate-set", 300*time.Millisecond)
	unknown := 0
	processes := map[int]bool{}
	for _, op := range ops {
		processes[op.Process] = true
		if op.Status == history.Unknown {
			unknown++
			if op.Kind != history.Set {
				t.Errorf("unknown outcome of %s", op)
			}
		}
	}
	if unknown == 0 || len(processes) <= unknown {
		t.Errorf("%d unknown outcomes over %d processes", unknown, len(processes))
	}
	if r := model.Check(ops, 30*time.Second); r.Verdict != model.Linearizable {
		t.Errorf("verdict %s", r.Verdict)
	}
}

// TestTimeoutsAreUnknown: a server that never answers a SET leaves its
// outcome unknown within the operation timeout.
func TestTimeoutsAreUnknown(t *testing.T) {
	ops, _ := run(t, "hang-on-set", 600*time.Millisecond)
	sets := 0
	for _, op := range ops {
		if op.Kind != history.Set {
			continue
		}
		sets++
		if op.Status != history.Unknown || !strings.Contains(op.Error, "timeout") {
			t.Errorf("SET to a hanging server: %s", op)
		}
		if took := op.Return - op.Call; took > 2*time.Second {
			t.Errorf("SET gave up after %s", took)
		}
	}
	if sets == 0 {
		t.Error("no SET was tried")
	}
}

func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want history.Status
	}{
		{&client.ServerError{Reply: "ERROR: not enough live members: have 1, need 2"}, history.Failed},
		{fmt.Errorf("SET 1: %w", &client.ServerError{Reply: "ERROR: could not store 2 copies: have 1, need 2 (live members: 1)"}), history.Failed},
		{&client.ServerError{Reply: "ERROR: internal error in the leader; the outcome of this request is unknown"}, history.Unknown},
		{errors.New("read reply: i/o timeout"), history.Unknown},
		{io.EOF, history.Unknown},
	} {
		if got, _ := classify(tt.err); got != tt.want {
			t.Errorf("classify(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := Config{Addrs: []string{"x"}, Clients: 1, Keys: 1, OpTimeout: 1, DialTimeout: 1, Recorder: history.NewRecorder()}
	for _, mutate := range []func(*Config){
		func(c *Config) { c.Addrs = nil },
		func(c *Config) { c.Clients = 0 },
		func(c *Config) { c.SetPercent = 90; c.DelPercent = 20 },
		func(c *Config) { c.OpTimeout = 0 },
		func(c *Config) { c.Recorder = nil },
	} {
		cfg := good
		mutate(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	if _, err := New(good); err != nil {
		t.Error(err)
	}
}
