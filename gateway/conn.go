package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/tolerex/tolerex/gateway/codec"
)

// connLimits are the per-connection I/O bounds.
type connLimits struct {
	maxLine      int
	idleTimeout  time.Duration // no request started for this long: close
	lineTimeout  time.Duration // a started line must be complete by then
	writeTimeout time.Duration // a reply batch must be accepted by then
}

// deadlineReader sets the connection's read deadline before every read:
// between lines the idle timeout applies; once a line's first byte has
// arrived, the rest must arrive within the line timeout of it, however
// slowly it trickles in (which is what defeats slow-loris clients). While
// the gateway drains, no read waits longer than DrainQuiet.
type deadlineReader struct {
	conn      net.Conn
	limits    connLimits
	draining  *atomic.Bool
	between   bool // at a line boundary: waiting for a new line
	lineStart time.Time
	lastIdle  bool // the deadline last set was the idle one
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	now := time.Now()
	deadline := d.lineStart.Add(d.limits.lineTimeout)
	d.lastIdle = d.between
	if d.between {
		deadline = now.Add(d.limits.idleTimeout)
	}
	_ = d.conn.SetReadDeadline(deadline)
	// Checked after setting the deadline: the session shortens it when
	// the gateway starts draining, and must not be overridden by a longer
	// one set just after.
	if d.isDraining() {
		if quiet := now.Add(DrainQuiet); quiet.Before(deadline) {
			_ = d.conn.SetReadDeadline(quiet)
		}
	}
	n, err := d.conn.Read(p)
	if n > 0 && d.between {
		d.between, d.lineStart = false, time.Now()
	}
	return n, err
}

func (d *deadlineReader) isDraining() bool { return d.draining != nil && d.draining.Load() }

// timeoutReply is the reply to a read that timed out.
func (d *deadlineReader) timeoutReply() string {
	if d.lastIdle {
		return fmt.Sprintf("%sidle timeout (no request for %s)", codec.ErrorPrefix, d.limits.idleTimeout)
	}
	return fmt.Sprintf("%sline timeout (a request line must arrive within %s)", codec.ErrorPrefix, d.limits.lineTimeout)
}

// readLoop reads request lines until EOF, an error, a timeout or QUIT, and
// hands each to in. Each line takes a window slot first, so a client
// cannot queue more than the window; the writer frees slots as replies go
// out. Memory stays bounded: a line longer than the limit is discarded as
// it arrives, and a SET's message (or a line that outgrows the reader's
// buffer, while it is read) holds bytes of the gateway's in-flight budget,
// which the reader waits for when other connections hold it all. Commands
// are sent in batches: everything parsed from bytes already in the buffer
// goes out together.
func readLoop(conn net.Conn, limits connLimits, draining *atomic.Bool, window chan<- struct{}, done <-chan struct{}, in *intake) {
	dr := &deadlineReader{conn: conn, limits: limits, draining: draining}
	r := bufio.NewReaderSize(dr, readBufferSize)
	// slot takes a window slot; false means the session is gone. When the
	// window is full, what is queued goes out first, so its replies can
	// free slots.
	slot := func() bool {
		select {
		case window <- struct{}{}:
			return true
		default:
		}
		in.flush()
		select {
		case window <- struct{}{}:
			return true
		case <-done:
			return false
		}
	}
	// take takes n bytes of the in-flight budget; false means the session
	// is gone. Before it waits, what is queued goes out (its replies
	// release bytes). Time spent waiting does not count against the line
	// timeout: the client is not the slow one.
	take := func(n int64) bool {
		waitStart := time.Now()
		ok := in.budget.acquire(n, done, in.flush)
		if waited := time.Since(waitStart); !dr.lineStart.IsZero() && waited > time.Millisecond {
			dr.lineStart = dr.lineStart.Add(waited)
		}
		return ok
	}
	// added sends a full batch.
	added := func() {
		if in.queued() >= maxInputBatch {
			in.flush()
		}
	}
	// finish reports the end of input: EOF is the normal end, and so is a
	// timeout while the gateway drains (the client went quiet); any other
	// timeout gets an error reply before the connection closes.
	finish := func(err error) {
		switch {
		case errors.Is(err, io.EOF):
			err = nil
		case errors.Is(err, os.ErrDeadlineExceeded) && dr.isDraining():
			err = nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			if slot() {
				in.timedOut(dr.timeoutReply())
			}
			err = nil
		}
		in.finish(err)
	}
	var long []byte    // a line longer than the reader's buffer, so far
	var reserved int64 // budget held for long: the longest line's worth
	var charged int64  // budget held for the line being handed over
	defer func() {     // the session is gone: give back what is held
		in.budget.release(reserved + charged)
	}()
	for {
		if !lineBuffered(r) {
			in.flush() // the next read may wait for the client
		}
		if long == nil {
			// Bytes already buffered belong to a line that has started.
			dr.between = r.Buffered() == 0
			if !dr.between && dr.lineStart.IsZero() {
				dr.lineStart = time.Now()
			}
		}
		chunk, err := r.ReadSlice('\n')
		start := time.Now()
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(long)+len(chunk) <= limits.maxLine {
				if long == nil {
					// Reserve the longest line at once rather than chunk by
					// chunk: a reader never waits holding part of a line,
					// so readers cannot wait on each other's half lines.
					if !take(int64(limits.maxLine)) {
						return
					}
					reserved = int64(limits.maxLine)
				}
				long = appendWithin(long, chunk, limits.maxLine)
				continue
			}
			long = nil
			in.budget.release(reserved)
			reserved = 0
			err := discardLine(r)
			if err == nil || errors.Is(err, io.EOF) {
				if !slot() {
					return
				}
				in.lineTooLong(start)
				added()
			}
			if err != nil {
				finish(err)
				return
			}
			continue
		}
		line := chunk
		tooLong := len(line) > limits.maxLine
		owned := false // line is long: a buffer of its own, not the reader's
		if long != nil {
			if len(long)+len(chunk) <= limits.maxLine {
				line, owned = appendWithin(long, chunk, limits.maxLine), true
			} else {
				tooLong = true
			}
			long, charged, reserved = nil, reserved, 0 // the reservation moves to this line
		}
		switch {
		case tooLong:
			in.budget.release(charged)
			charged = 0
			if !slot() {
				return
			}
			in.lineTooLong(start)
			added()
		case len(line) > 0 && line[len(line)-1] != '\n':
			in.budget.release(charged)
			charged = 0
			// Input ended (or timed out) inside a line. It is not run: a
			// client that died mid-write must not store a truncated SET.
			if errors.Is(err, io.EOF) {
				if !slot() {
					return
				}
				in.incompleteLine(start)
				added()
			}
		case len(line) > 0:
			cmd := codec.Parse(line)
			if !slot() {
				return
			}
			switch {
			case cmd.Kind == codec.KindGet:
				// A GET holds nothing yet, but its reply will: it waits
				// while replies (or messages) already fill the budget.
				in.budget.release(charged)
				charged = 0
				if !take(0) {
					return
				}
			case cmd.Kind != codec.KindSet || len(cmd.Message) > in.maxMessage:
				in.budget.release(charged) // nothing of the line is kept
				charged = 0
			case owned:
				// The line has a buffer of its own; the message stays in it,
				// or in an exact copy when doubling left much room unused.
				if cap(line)-len(line) > len(line)/8 {
					cmd.Message = append(make([]byte, 0, len(cmd.Message)), cmd.Message...)
					in.budget.release(charged - int64(len(cmd.Message)))
					charged = int64(len(cmd.Message))
				} else {
					in.budget.release(charged - int64(cap(line)))
					charged = int64(cap(line))
				}
			default:
				// The reader's buffer is reused: copy the message out.
				if !take(int64(len(cmd.Message))) {
					return
				}
				charged = int64(len(cmd.Message))
				cmd.Message = append([]byte(nil), cmd.Message...)
			}
			in.command(cmd, start, charged)
			charged = 0
			added()
			if cmd.Kind == codec.KindQuit {
				finish(nil)
				return
			}
		}
		if err != nil {
			finish(err)
			return
		}
		dr.lineStart = time.Time{}
	}
}

// readBufferSize is the reader's buffer: a line that fits is parsed in
// place; a longer one is gathered in a buffer of its own.
const readBufferSize = 16 << 10

// appendWithin appends chunk to line, growing it (by doubling) to at most
// limit bytes of capacity, so that a line's buffer never outgrows what was
// reserved for it. len(line)+len(chunk) must not exceed limit.
func appendWithin(line, chunk []byte, limit int) []byte {
	if need := len(line) + len(chunk); need > cap(line) {
		grown := make([]byte, len(line), min(max(2*cap(line), need, readBufferSize), limit))
		copy(grown, line)
		line = grown
	}
	return append(line, chunk...)
}

// maxInputBatch bounds the commands the reader sends in one batch.
const maxInputBatch = 128

// lineBuffered reports whether a whole line is already in the buffer, so
// reading it will not wait for the client.
func lineBuffered(r *bufio.Reader) bool {
	buffered, _ := r.Peek(r.Buffered())
	return bytes.IndexByte(buffered, '\n') >= 0
}

// discardLine skips the rest of an over-long line.
func discardLine(r *bufio.Reader) error {
	for {
		_, err := r.ReadSlice('\n')
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
}

// writeLoop writes replies, flushing whenever no more are queued, and
// frees one window slot per reply. A client that does not take a flush
// within the write timeout is disconnected.
func writeLoop(conn net.Conn, writeTimeout time.Duration, greeting []byte, out <-chan outItem, window <-chan struct{}, done <-chan struct{}, budget *byteBudget, send func(any)) {
	w := bufio.NewWriterSize(deadlineWriter{conn: conn, timeout: writeTimeout}, 16<<10)
	var err error
	if len(greeting) > 0 {
		if _, err = w.Write(greeting); err == nil {
			err = w.Flush()
		}
	}
	for err == nil {
		var item outItem
		select {
		case item = <-out:
		case <-done:
			return
		}
		if len(item.data) > 0 {
			_, err = w.Write(item.data)
		}
		budget.release(item.charged) // copied into the writer's buffer or the socket
		if item.data != nil || !item.close {
			<-window // a reply, not the bare close instruction
		}
		if err == nil && (len(out) == 0 || item.close) {
			err = w.Flush()
		}
		if item.close && err == nil {
			if hc, ok := conn.(interface{ CloseWrite() error }); ok {
				_ = hc.CloseWrite()
			}
			break
		}
	}
	send(&writerDone{err: err})
}

// deadlineWriter bounds every write to the connection.
type deadlineWriter struct {
	conn    net.Conn
	timeout time.Duration
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	_ = d.conn.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.conn.Write(p)
}
