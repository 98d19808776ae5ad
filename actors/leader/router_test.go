package leader

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/tolerex/tolerex/gateway/codec"
	"github.com/tolerex/tolerex/messages"
)

func TestRouterNumbersResendsAndExpires(t *testing.T) {
	start := time.Unix(1000, 0)
	r := newRouter(42, 10*time.Second)
	session := actor.NewPID("local", "session/1")
	a := r.accept(session, &messages.ClientRequest{RequestId: 7, Op: messages.Op_OP_SET}, start, 0, 0)
	b := r.accept(session, &messages.ClientRequest{RequestId: 8, Op: messages.Op_OP_GET}, start.Add(time.Second), 0, 0)
	if a.seq != 1 || b.seq != 2 || r.len() != 2 {
		t.Fatalf("seqs %d %d, pending %d; want 1 2, 2", a.seq, b.seq, r.len())
	}
	if got := r.unsent(); len(got) != 2 || got[0] != a {
		t.Fatalf("unsent = %v, want both in arrival order", got)
	}
	r.sending(a, "gw2", start)
	r.sending(b, localRoute, start)
	if got := r.unsent(); len(got) != 0 {
		t.Fatalf("unsent after sending = %d", len(got))
	}
	// Not answered within the retry: the forwarded one is probed (not sent
	// again, whole), and probed again only after another retry time.
	if got := r.unanswered(start.Add(3*time.Second), 2*time.Second); len(got) != 1 || got[0] != a {
		t.Fatalf("after the retry time: probe %v, want the forwarded request", got)
	}
	if got := r.unanswered(start.Add(4*time.Second), 2*time.Second); len(got) != 0 || len(r.unsent()) != 0 {
		t.Fatalf("probed again within the retry time (%d), or sent again whole (%d)", len(got), len(r.unsent()))
	}
	if got := r.unanswered(start.Add(5500*time.Millisecond), 2*time.Second); len(got) != 1 {
		t.Fatalf("not probed again after another retry time: %v", got)
	}
	// A leader change sends everything again.
	r.resend("")
	if len(r.unsent()) != 2 {
		t.Fatal("a leader change did not send everything again")
	}
	// Answered once only.
	if r.answered(b.seq) != b || r.answered(b.seq) != nil {
		t.Fatal("a request was answered twice")
	}
	// The write expires at its deadline with an unknown outcome: it was
	// sent once, so it may be in the log although it waits to be sent
	// again.
	if got := r.expire(start.Add(9 * time.Second)); len(got) != 0 {
		t.Fatalf("expired before its deadline: %v", got)
	}
	got := r.expire(start.Add(11 * time.Second))
	if len(got) != 1 || got[0] != a || r.len() != 0 {
		t.Fatalf("expired %v, pending %d; want the SET and nothing left", got, r.len())
	}
	reply := expiredReply(got[0], false)
	if reply.GetRequestId() != 7 || reply.GetCode() != messages.ReplyCode_REPLY_ERROR || reply.GetError()[:15] != "outcome unknown" {
		t.Fatalf("expired reply %v", reply)
	}
}

func TestRouterExpiredReadIsATimeout(t *testing.T) {
	r := newRouter(1, time.Second)
	rt := r.accept(nil, &messages.ClientRequest{RequestId: 3, Op: messages.Op_OP_GET}, time.Unix(0, 0), 0, 0)
	if got := expiredReply(rt, false).GetError(); got[:7] != "timeout" {
		t.Fatalf("an expired GET answers %q, want a timeout", got)
	}
}

// A write that no leader was ever known to take expires with a definite
// error; one sent and given back (its leader changed) with an unknown
// outcome, although both wait unsent at the deadline.
func TestRouterExpiredWriteNeverSentIsDefinite(t *testing.T) {
	start := time.Unix(0, 0)
	r := newRouter(1, time.Second)
	never := r.accept(nil, &messages.ClientRequest{RequestId: 1, Op: messages.Op_OP_SET}, start, 0, 0)
	given := r.accept(nil, &messages.ClientRequest{RequestId: 2, Op: messages.Op_OP_DEL}, start, 0, 0)
	r.sending(given, "gw2", start)
	r.resend("gw2")
	if got := r.unsent(); len(got) != 2 {
		t.Fatalf("unsent %d, want both waiting", len(got))
	}
	got := r.expire(start.Add(2 * time.Second))
	if len(got) != 2 {
		t.Fatalf("expired %d, want 2", len(got))
	}
	for _, tt := range []struct {
		rt   *routed
		want codec.Outcome
	}{{never, codec.Definite}, {given, codec.Indeterminate}} {
		reply := expiredReply(tt.rt, false).GetError()
		if outcome := codec.ClassifyError(reply); outcome != tt.want {
			t.Errorf("request %d expired with %q: %v, want %v", tt.rt.request, reply, outcome, tt.want)
		}
	}
}

// Requests given back out of order are sent again in arrival order, and
// each once.
func TestRouterUnsentInArrivalOrder(t *testing.T) {
	start := time.Unix(0, 0)
	r := newRouter(1, time.Minute)
	var rts []*routed
	for i := range 5 {
		rt := r.accept(nil, &messages.ClientRequest{RequestId: uint64(i), Op: messages.Op_OP_SET}, start, 0, 0)
		r.sending(rt, "gw2", start)
		rts = append(rts, rt)
	}
	if got := r.unsent(); len(got) != 0 {
		t.Fatalf("unsent %d after sending all", len(got))
	}
	r.notTaken(rts[3].seq)
	r.notTaken(rts[1].seq)
	r.notTaken(rts[3].seq)
	r.answered(rts[1].seq)
	r.notTaken(rts[4].seq)
	r.notTaken(rts[0].seq)
	r.notTaken(rts[2].seq)
	got := r.unsent()
	var seqs []uint64
	for _, rt := range got {
		seqs = append(seqs, rt.seq)
	}
	if want := []uint64{1, 3, 4, 5}; !slices.Equal(seqs, want) {
		t.Fatalf("unsent seqs %v, want %v", seqs, want)
	}
	for _, rt := range got {
		r.sending(rt, "gw3", start)
	}
	if got := r.unsent(); len(got) != 0 || len(r.toSend) != 0 {
		t.Fatalf("after sending them: unsent %d, %d seqs queued", len(got), len(r.toSend))
	}
}

// TestDefiniteErrorAfterResendIsUnknown: a write's definite error speaks
// only for the attempt it answers. Sent once, it stands; sent twice (the
// first attempt went unanswered for forwardRetry, or the leader changed),
// the other attempt may still be applied, so the client is told the
// outcome is unknown. Reads and indeterminate errors are left alone.
func TestDefiniteErrorAfterResendIsUnknown(t *testing.T) {
	start := time.Unix(1000, 0)
	couldNotStore := &messages.ClientReply{Code: messages.ReplyCode_REPLY_ERROR, Error: "could not store 2 copies: have 1, need 2 (live members: 2)"}
	unknown := &messages.ClientReply{Code: messages.ReplyCode_REPLY_ERROR, Error: "outcome unknown: leader restarting before this request was answered"}
	ok := &messages.ClientReply{Code: messages.ReplyCode_REPLY_OK}
	for _, tc := range []struct {
		name    string
		op      messages.Op
		sends   int
		reply   *messages.ClientReply
		rewrite bool
	}{
		{"SET sent once", messages.Op_OP_SET, 1, couldNotStore, false},
		{"SET sent twice", messages.Op_OP_SET, 2, couldNotStore, true},
		{"DEL sent three times", messages.Op_OP_DEL, 3, couldNotStore, true},
		{"GET sent twice", messages.Op_OP_GET, 2, couldNotStore, false},
		{"SET sent twice, already unknown", messages.Op_OP_SET, 2, unknown, false},
		{"SET sent twice, OK", messages.Op_OP_SET, 2, ok, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRouter(42, 10*time.Second)
			rt := r.accept(actor.NewPID("local", "session/1"), &messages.ClientRequest{RequestId: 7, Op: tc.op}, start, 0, 0)
			for range tc.sends {
				r.sending(rt, "gw2", start)
			}
			text, rewritten := notDefiniteAfterResend(rt, tc.reply)
			if rewritten != tc.rewrite {
				t.Fatalf("rewritten %v, want %v (%q)", rewritten, tc.rewrite, text)
			}
			if rewritten && (codec.ClassifyError(text) != codec.Indeterminate || !strings.Contains(text, tc.reply.GetError())) {
				t.Errorf("new error %q: want an unknown outcome that quotes the attempt's error", text)
			}
		})
	}
}

// A leader answering "busy" puts the router under a window: it forwards no
// more than that leader held for it, grows the window as answers come,
// does not count the refused attempt as a send, and answers a write that
// waited its whole deadline for room with a definite error.
func TestRouterForwardsUnderAWindowOnceTheLeaderIsBusy(t *testing.T) {
	start := time.Unix(1000, 0)
	r := newRouter(42, 10*time.Second)
	session := actor.NewPID("local", "session/1")
	var rts []*routed
	for i := range 4 {
		rt := r.accept(session, &messages.ClientRequest{RequestId: uint64(i), Op: messages.Op_OP_SET, Payload: make([]byte, 10)}, start, 0, 10)
		r.sending(rt, "gw2", start)
		rts = append(rts, rt)
	}
	if r.forwarded != 40 || !r.mayForward(rts[0], start, busyPause) {
		t.Fatalf("forwarded %d, want 40, and no window yet", r.forwarded)
	}
	r.busy(rts[2].seq, start)
	r.busy(rts[3].seq, start)
	if !r.windowed || r.window != 20 || r.forwarded != 20 || rts[2].sends != 0 || rts[3].everSent() {
		t.Fatalf("after two busy answers: windowed %v, window %d, forwarded %d, sends %d; want a 20-byte window, 20 forwarded, the attempts uncounted",
			r.windowed, r.window, r.forwarded, rts[2].sends)
	}
	if got := r.unsent(); len(got) != 2 || r.mayForward(got[0], start, busyPause) {
		t.Fatalf("unsent %d; a refused request may be sent again at once: %v", len(got), r.mayForward(got[0], start, busyPause))
	}
	// An answer frees 10 bytes and grows the window by 5: one fits.
	r.answered(rts[0].seq)
	if r.window != 25 || !r.mayForward(rts[2], start, busyPause) {
		t.Fatalf("window %d after an answer, want 25 and room for one", r.window)
	}
	if windowEnd := r.sending(rts[2], "gw2", start); windowEnd != 0 || rts[2].sends != 1 {
		t.Fatalf("sent again with window_end %d, sends %d: want a first attempt", windowEnd, rts[2].sends)
	}
	if r.mayForward(rts[3], start, busyPause) {
		t.Fatal("forwarded past the window")
	}
	// Everything answered busy: one goes again after a pause, not at once.
	r.busy(rts[1].seq, start)
	r.busy(rts[2].seq, start)
	if r.forwarded != 0 || r.mayForward(rts[1], start.Add(busyPause/2), busyPause) || !r.mayForward(rts[1], start.Add(busyPause), busyPause) {
		t.Fatalf("forwarded %d: want nothing forwarded and one request after the pause", r.forwarded)
	}
	// Never taken until the deadline: definite.
	expired := r.expire(start.Add(11 * time.Second))
	if len(expired) != 3 {
		t.Fatalf("expired %d, want the 3 unanswered", len(expired))
	}
	reply := expiredReply(expired[0], r.windowed).GetError()
	if reply != BusyError || codec.ClassifyError(reply) != codec.Definite {
		t.Fatalf("expired never-taken write: %q (%v), want the definite busy error", reply, codec.ClassifyError(reply))
	}
	// A new leader: no window.
	r.resend("")
	if r.windowed {
		t.Fatal("the window outlived the leader")
	}
}

// With a bound on what it forwards at once, the router starts every
// leader with that window and never grows past it.
func TestRouterForwardsAtMostItsBound(t *testing.T) {
	start := time.Unix(1000, 0)
	r := newRouter(42, 10*time.Second)
	r.limitForwarding(25)
	session := actor.NewPID("local", "session/1")
	var rts []*routed
	for i := range 4 {
		rts = append(rts, r.accept(session, &messages.ClientRequest{RequestId: uint64(i), Op: messages.Op_OP_SET, Payload: make([]byte, 10)}, start, 0, 10))
	}
	sent := 0
	for _, rt := range r.unsent() {
		if !r.mayForward(rt, start, busyPause) {
			break
		}
		r.sending(rt, "gw2", start)
		sent++
	}
	if sent != 2 || r.forwarded != 20 {
		t.Fatalf("sent %d (%d bytes) under a 25-byte bound, want 2", sent, r.forwarded)
	}
	r.answered(rts[0].seq)
	r.answered(rts[1].seq)
	if r.window != 25 {
		t.Fatalf("window %d after answers, want it kept at the bound 25", r.window)
	}
	r.sending(rts[2], "gw2", start)
	r.busy(rts[2].seq, start)
	if r.window != 0 {
		t.Fatalf("window %d after busy with nothing else forwarded, want 0", r.window)
	}
	r.resend("")
	if !r.windowed || r.window != 25 {
		t.Fatalf("after a leader change: windowed %v, window %d; want the bound again", r.windowed, r.window)
	}
}
