package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tolerex/tolerex/gateway/client"
	"github.com/tolerex/tolerex/gateway/codec"
)

// maxIDRunsListed is how many runs of consecutive ids a bulk summary lists
// for one lost connection or one gateway left.
const maxIDRunsListed = 4

// bulkResult is the outcome of one bulk run.
type bulkResult struct {
	FirstID    int64
	Count      int // ids the run covered: FirstID..FirstID+Count-1
	Elapsed    time.Duration
	Bytes      int64 // message bytes sent
	Errors     int   // replies other than OK, refusals that were not sent again included
	FirstError string
	// Unknown counts the requests in flight on lost connections: they may
	// or may not have taken effect.
	Unknown int
	// Losses are the lost connections, in order.
	Losses []bulkLoss
	// Moves are the gateways the run left because they refused its
	// requests as unavailable (runs no Raft), in order.
	Moves []bulkMove
	// Stopped, if set, says why the run ended before covering every id it
	// was asked for, though the session goes on.
	Stopped string
	MeanRTT time.Duration // of the requests answered, refusals left aside
	P99RTT  time.Duration
}

// bulkLoss is a connection a bulk run lost.
type bulkLoss struct {
	Addr     string  // the gateway lost
	InFlight []int64 // ids sent and not answered: outcome unknown
	To       string  // where the run went on; "" if no gateway answered
}

// String describes the loss for the summary.
func (l bulkLoss) String() string {
	next := "no gateway answered"
	if l.To != "" {
		next = "reconnected to " + l.To
	}
	return fmt.Sprintf("%s lost with %s in flight, %s", l.Addr, describeIDs(l.InFlight), next)
}

// bulkMove is a gateway a bulk run left because it answered "gateway
// unavailable": a definite refusal, so the refused ids went to the next
// gateway.
type bulkMove struct {
	From    string
	Refused []int64
	To      string // "" if no gateway answered, or the run stopped there
}

// String describes the move for the summary.
func (m bulkMove) String() string {
	next := "no other gateway took them"
	if m.To != "" {
		next = "sent again to " + m.To
	}
	return fmt.Sprintf("%s refused %s, %s", m.From, describeIDs(m.Refused), next)
}

// describeIDs names ids as runs of consecutive ids: "nothing", "id 7",
// "ids 2..3, 9", with at most maxIDRunsListed runs.
func describeIDs(ids []int64) string {
	if len(ids) == 0 {
		return "nothing"
	}
	var b strings.Builder
	if len(ids) == 1 {
		b.WriteString("id ")
	} else {
		b.WriteString("ids ")
	}
	runs := 0
	for start := 0; start < len(ids); {
		end := start + 1
		for end < len(ids) && ids[end] == ids[end-1]+1 {
			end++
		}
		if runs == maxIDRunsListed {
			fmt.Fprintf(&b, " and %d more", len(ids)-start)
			break
		}
		if runs > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatInt(ids[start], 10))
		if end-start > 1 {
			b.WriteString("..")
			b.WriteString(strconv.FormatInt(ids[end-1], 10))
		}
		runs++
		start = end
	}
	return b.String()
}

// summary is the one line printed after a bulk run.
func (r bulkResult) summary() string {
	var line strings.Builder
	opsPerSecond := 0.0
	if r.Elapsed > 0 {
		opsPerSecond = float64(r.Count) / r.Elapsed.Seconds()
	}
	fmt.Fprintf(&line, "bulk SET ids %d..%d: %d ops in %.3f s, %.0f ops/s, avg RTT %s, p99 RTT %s",
		r.FirstID, r.FirstID+int64(r.Count)-1, r.Count, r.Elapsed.Seconds(), opsPerSecond, formatMillis(r.MeanRTT), formatMillis(r.P99RTT))
	if r.Errors > 0 {
		fmt.Fprintf(&line, ", %d errors (first: %s)", r.Errors, r.FirstError)
	}
	if r.Unknown > 0 {
		fmt.Fprintf(&line, ", %d outcome unknown (GET them to see)", r.Unknown)
	}
	if len(r.Losses) > 0 {
		reconnects := 0
		for _, loss := range r.Losses {
			if loss.To != "" {
				reconnects++
			}
		}
		fmt.Fprintf(&line, ", %s (", plural(reconnects, "reconnect"))
		listed(&line, r.Losses)
		line.WriteString(")")
	}
	if len(r.Moves) > 0 {
		fmt.Fprintf(&line, ", left %s (", plural(len(r.Moves), "unavailable gateway"))
		listed(&line, r.Moves)
		line.WriteString(")")
	}
	if r.Stopped != "" {
		fmt.Fprintf(&line, "; stopped: %s", r.Stopped)
	}
	return line.String()
}

// plural is "1 thing" or "n things".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// listed writes the first maxLossesListed items, "; "-separated, and a
// count of the rest.
func listed[T fmt.Stringer](b *strings.Builder, items []T) {
	for i, item := range items {
		if i == maxLossesListed {
			fmt.Fprintf(b, "; and %d more", len(items)-i)
			return
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(item.String())
	}
}

// bulkQueue is what a bulk run still has to send: ids a gateway refused as
// unavailable (definite refusals, so they are sent again), then the ids
// next..end-1. Only one goroutine at a time touches it.
type bulkQueue struct {
	resend    []int64
	next, end int64
}

// empty reports whether nothing is left to send.
func (q *bulkQueue) empty() bool { return len(q.resend) == 0 && q.next >= q.end }

// pop takes the next id to send; the queue must not be empty.
func (q *bulkQueue) pop() int64 {
	if len(q.resend) > 0 {
		id := q.resend[0]
		q.resend = q.resend[1:]
		return id
	}
	q.next++
	return q.next - 1
}

// bulkTally collects the replies of a bulk run; only one reader goroutine
// at a time touches it.
type bulkTally struct {
	rtts       *hdrhistogram.Histogram // microseconds
	answered   int
	totalRTT   time.Duration
	errors     int
	firstError string
}

// error counts an error reply.
func (t *bulkTally) error(reply string) {
	if t.errors == 0 {
		t.firstError = reply
	}
	t.errors++
}

// runBulkSet sends "SET <id> <message>_<id>" for the ids firstID ..
// firstID+Count-1 over conn, with at most bulkWindow requests in flight.
//
// When the connection is lost it counts the requests in flight as of
// unknown outcome (it does not send them again: that would be new
// writes), reconnects to the next gateway and goes on with the ids not
// sent yet. When --addr names several gateways (gateways > 1) and the
// gateway answers "gateway unavailable" (it runs no Raft: a definite
// refusal), it stops sending there, reads the replies in flight, and sends
// the refused ids again, and the rest, to the next gateway; once every
// gateway in a row has refused with nothing served in between, the run
// stops, counting the refused ids as errors. With one gateway refusals are
// error replies like any other.
//
// The error return means the run could not go on: no gateway answered,
// the connection was lost too often in a row before any reply, or it
// failed otherwise; the result then covers the ids sent so far. Error
// replies are counted in the result.
func runBulkSet(ctx context.Context, conn *client.Failover, bulk bulkRequest, firstID int64, gateways int) (bulkResult, error) {
	run := &bulkRun{
		ctx: ctx, conn: conn, gateways: gateways,
		result: bulkResult{FirstID: firstID},
		tally:  bulkTally{rtts: hdrhistogram.New(1, rttHistogramMax, 3)},
		queue:  bulkQueue{next: firstID, end: firstID + int64(bulk.Count)},
	}
	var err error
	start := time.Now()
	for err == nil && !run.queue.empty() && run.result.Stopped == "" {
		err = run.next(runBulkSegment(conn.Client(), bulk.Message, &run.queue, gateways > 1, &run.tally))
	}
	return run.finish(time.Since(start)), err
}

// bulkRun is the state of one bulk run between its segments.
type bulkRun struct {
	ctx         context.Context
	conn        *client.Failover
	gateways    int // addresses in --addr
	result      bulkResult
	tally       bulkTally
	queue       bulkQueue
	fruitless   int    // connections in a row lost before any reply
	refusing    int    // gateways in a row that refused, with nothing served since
	lastRefusal string // the last gateway's first refusal
}

// next takes in how a segment ended and goes on to the next gateway if it
// must. Its error ends the run.
func (r *bulkRun) next(segment bulkSegment) error {
	r.result.Bytes += segment.payload
	if len(segment.refused) > 0 {
		if segment.served > 0 {
			r.refusing = 0
		}
		r.refusing++
		r.lastRefusal = segment.refusal
		r.queue.resend = append(slices.Clone(segment.refused), r.queue.resend...)
	}
	switch {
	case segment.err != nil:
		return r.lost(segment)
	case len(segment.refused) > 0:
		return r.leave(segment)
	}
	return nil // everything was sent and answered
}

// lost counts the requests in flight on a lost connection as of unknown
// outcome and reconnects to the next gateway.
func (r *bulkRun) lost(segment bulkSegment) error {
	addr := r.conn.Addr()
	if !client.Lost(segment.err) || r.ctx.Err() != nil {
		return fmt.Errorf("connection to %s: %w", addr, segment.err)
	}
	r.result.Unknown += len(segment.unanswered)
	if segment.answered > 0 {
		r.fruitless = 0
	} else if r.fruitless++; r.fruitless > maxFruitlessReconnects {
		r.result.Losses = append(r.result.Losses, bulkLoss{Addr: addr, InFlight: segment.unanswered})
		return fmt.Errorf("connection lost %d times in a row before any reply, last to %s: %w", r.fruitless, addr, segment.err)
	}
	to, err := r.reconnect()
	r.result.Losses = append(r.result.Losses, bulkLoss{Addr: addr, InFlight: segment.unanswered, To: to})
	if err != nil {
		return fmt.Errorf("connection to %s lost (%v), and no gateway answered: %w", addr, segment.err, err)
	}
	return nil
}

// leave goes on to the next gateway after a refusal, or stops the run once
// every gateway has refused in turn.
func (r *bulkRun) leave(segment bulkSegment) error {
	from := r.conn.Addr()
	if r.refusing >= r.gateways {
		r.result.Moves = append(r.result.Moves, bulkMove{From: from, Refused: segment.refused})
		r.result.Stopped = fmt.Sprintf("every gateway of --addr refused in turn (last: %s)", segment.refusal)
		return nil
	}
	to, err := r.reconnect()
	r.result.Moves = append(r.result.Moves, bulkMove{From: from, Refused: segment.refused, To: to})
	if err != nil {
		return fmt.Errorf("gateway %s cannot serve (%s), and no other gateway answered: %w", from, segment.refusal, err)
	}
	return nil
}

// reconnect connects to the next gateway and returns its address.
func (r *bulkRun) reconnect() (string, error) {
	if err := r.conn.Reconnect(r.ctx); err != nil {
		return "", err
	}
	return r.conn.Addr(), nil
}

// finish completes the result once the run has ended.
func (r *bulkRun) finish(elapsed time.Duration) bulkResult {
	result := r.result
	result.Elapsed = elapsed
	result.Count = int(r.queue.next - result.FirstID)
	for range r.queue.resend {
		r.tally.error(r.lastRefusal) // refused, and not sent again
	}
	result.Errors = r.tally.errors
	result.FirstError = r.tally.firstError
	if r.tally.answered > 0 {
		result.MeanRTT = r.tally.totalRTT / time.Duration(r.tally.answered)
		result.P99RTT = time.Duration(r.tally.rtts.ValueAtQuantile(99)) * time.Microsecond
	}
	return result
}

// bulkSegment is the part of a bulk run sent on one connection.
type bulkSegment struct {
	answered int   // replies read, refusals included
	served   int   // of them, not refusals
	payload  int64 // message bytes sent
	// unanswered are the ids sent and not answered when the connection
	// failed, in the order sent.
	unanswered []int64
	// refused are the ids the gateway answered "gateway unavailable" (with
	// moveOn only), in the order sent; refusal is the first such reply.
	refused []int64
	refusal string
	err     error // why the segment ended early, other than refusals; nil if every request sent was answered
}

// bulkSent is a request handed to the connection, for the reader.
type bulkSent struct {
	id int64
	at time.Time
}

// runBulkSegment sends the SETs of the ids queue holds on conn, reading
// the replies on a second goroutine, until all are answered, the
// connection fails, or (with moveOn) the gateway refuses one as
// unavailable: it then stops sending and reads the replies in flight.
func runBulkSegment(conn *client.Client, message []byte, queue *bulkQueue, moveOn bool, tally *bulkTally) bulkSegment {
	slots := make(chan struct{}, bulkWindow)
	sent := make(chan bulkSent, bulkWindow)
	leave := make(chan struct{})
	readerDone := make(chan struct{})
	reader := bulkReader{conn: conn, tally: tally, moveOn: moveOn, leave: leave}
	var readErr error
	go func() {
		defer close(readerDone)
		readErr = reader.read(slots, sent)
		if readErr != nil {
			// The writer may be blocked writing to a gateway that is gone.
			_ = conn.Close()
		}
	}()
	payload, writeErr := writeBulkRequests(conn, message, queue, slots, sent, readerDone, leave)
	if writeErr != nil && !client.Lost(writeErr) {
		// The reader may wait for replies that will never come.
		_ = conn.Close()
	}
	<-readerDone
	segment := bulkSegment{answered: reader.answered, served: reader.answered - len(reader.refused), payload: payload,
		refused: reader.refused, refusal: reader.refusal}
	switch {
	case readErr != nil:
		segment.err = readErr
	case writeErr != nil:
		// Every request sent was answered, but the connection failed.
		segment.err = writeErr
	}
	if segment.err != nil {
		if reader.pending != nil {
			segment.unanswered = append(segment.unanswered, reader.pending.id)
		}
		for request := range sent { // the writer has closed it
			segment.unanswered = append(segment.unanswered, request.id)
		}
	}
	return segment
}

// writeBulkRequests takes a window slot and stamps the send time for every
// request before buffering it, and flushes every bulkFlushEvery requests
// and whenever the window is full. It returns the message bytes of the
// requests it handed to the connection, and closes sent when it stops. It
// stops early, without error, if the reader has ended or asks it to leave
// the gateway.
func writeBulkRequests(conn *client.Client, message []byte, queue *bulkQueue,
	slots chan<- struct{}, sent chan<- bulkSent, readerDone, leave <-chan struct{}) (payload int64, err error) {
	defer close(sent)
	var line []byte
	unflushed := 0
	for !queue.empty() {
		select {
		case <-leave:
			return payload, conn.Flush()
		case slots <- struct{}{}:
		default:
			if err := conn.Flush(); err != nil {
				return payload, err
			}
			unflushed = 0
			select {
			case slots <- struct{}{}:
			case <-leave:
				return payload, nil
			case <-readerDone:
				return payload, nil
			}
		}
		id := queue.pop()
		line = append(line[:0], "SET "...)
		line = strconv.AppendInt(line, id, 10)
		line = append(line, ' ')
		messageStart := len(line)
		line = append(line, message...)
		line = append(line, '_')
		line = strconv.AppendInt(line, id, 10)
		// Handed to the reader before Send: a failed Send may have
		// written part of the buffer, this line included.
		payload += int64(len(line) - messageStart)
		sent <- bulkSent{id: id, at: time.Now()} // never blocks: the slots bound it
		if err := conn.Send(line); err != nil {
			return payload, err
		}
		if unflushed++; unflushed == bulkFlushEvery {
			if err := conn.Flush(); err != nil {
				return payload, err
			}
			unflushed = 0
		}
	}
	return payload, conn.Flush()
}

// bulkReader reads the replies of one bulk segment.
type bulkReader struct {
	conn   *client.Client
	tally  *bulkTally
	moveOn bool
	leave  chan struct{} // closed at the first refusal, with moveOn
	// answered counts the replies read; refused and refusal are as in
	// bulkSegment; pending is the request whose reply was being read
	// when reading failed.
	answered int
	refused  []int64
	refusal  string
	pending  *bulkSent
}

// read reads one reply per request on sent, until the writer closes it,
// timing each against its stamp and freeing its window slot.
func (r *bulkReader) read(slots <-chan struct{}, sent <-chan bulkSent) error {
	for request := range sent {
		reply, err := r.conn.ReadReply()
		if err != nil {
			r.pending = &request
			return err
		}
		rtt := time.Since(request.at)
		<-slots
		r.answered++
		if r.moveOn && codec.GatewayUnavailable(string(reply)) {
			if r.refused == nil {
				r.refusal = string(reply)
				close(r.leave)
			}
			r.refused = append(r.refused, request.id)
			continue
		}
		r.tally.answered++
		r.tally.totalRTT += rtt
		micros := max(rtt.Microseconds(), 1)
		if r.tally.rtts.RecordValue(min(micros, rttHistogramMax)) != nil {
			return fmt.Errorf("record RTT %v: out of the histogram's range", rtt)
		}
		if string(reply) != codec.ReplyOK {
			r.tally.error(string(reply))
		}
	}
	return nil
}
