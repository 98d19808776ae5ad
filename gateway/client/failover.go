package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of a Dialer whose Rounds or Backoff is zero.
const (
	// DefaultRounds is how many passes over the address list a dial makes
	// before it gives up.
	DefaultRounds = 5
	// DefaultBackoff is the pause before the second pass; it doubles before
	// each later pass, up to maxBackoff. With the defaults a dial that
	// finds every address refusing gives up after about 3 s.
	DefaultBackoff = 200 * time.Millisecond
	// maxBackoff bounds the pause between two passes.
	maxBackoff = 5 * time.Second
)

// probeWait is how long Probe waits for the end of the stream. A server
// that closed or reset the connection earlier has already said so; a live
// one sends nothing while it has no request, so Probe times out.
const probeWait = time.Millisecond

// ParseAddrs splits a comma-separated list of server addresses
// ("host:port,host:port"), as the --addr flags take it. Blanks around each
// address are dropped. It fails on an empty list, an empty entry, an entry
// that is not host:port with a port number, and a repeated address.
func ParseAddrs(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, errors.New("no address given (want host:port or a comma-separated list of them)")
	}
	parts := strings.Split(list, ",")
	addrs := make([]string, 0, len(parts))
	seen := make(map[string]bool, len(parts))
	for i, part := range parts {
		addr := strings.TrimSpace(part)
		if addr == "" {
			return nil, fmt.Errorf("address list %q: entry %d is empty", list, i+1)
		}
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("address list %q: entry %d: %w", list, i+1, err)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return nil, fmt.Errorf("address list %q: entry %d (%s): port %q is not a number from 1 to 65535", list, i+1, addr, port)
		}
		if seen[addr] {
			return nil, fmt.Errorf("address list %q: %s is given twice", list, addr)
		}
		seen[addr] = true
		addrs = append(addrs, addr)
	}
	return addrs, nil
}

// Lost reports whether err says that the connection to the server is gone,
// so that a request sent on it may or may not have been run and another
// server of the group should be tried: the server closed or reset the
// connection, refused or dropped a new one, the connection was closed
// locally, or the server did not answer within the I/O timeout (a
// connection that timed out is unusable: the position in the reply stream
// is unknown). A *ServerError, an over-long reply or a reply that breaks
// the protocol is not a lost connection.
func Lost(err error) bool {
	if err == nil {
		return false
	}
	var serverErr *ServerError
	if errors.As(err, &serverErr) || errors.Is(err, ErrLineTooLong) {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	// Every failed read, write or dial of a socket is a *net.OpError:
	// connection refused, reset, broken pipe, unreachable, a TLS alert.
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

// Dialer connects to the first server of a list that answers. Its zero
// Rounds and Backoff mean DefaultRounds and DefaultBackoff.
type Dialer struct {
	// Addrs are the servers, tried in this order (starting where the
	// caller says, wrapping around).
	Addrs []string
	// Options apply to every dial.
	Options Options
	// Rounds is how many passes over Addrs a dial makes before it gives
	// up.
	Rounds int
	// Backoff is the pause before the second pass; it doubles before each
	// later pass, up to 5 s.
	Backoff time.Duration
}

// Attempt is one address a dial tried, with the error of its last try.
type Attempt struct {
	Addr string
	Err  error
}

// DialError reports that no address of a Dialer answered. It names every
// address tried, with the error of its last try.
type DialError struct {
	// Attempts has one entry per address, in the order of the first pass.
	Attempts []Attempt
	// Rounds is how many passes were made.
	Rounds int
}

// Error names every address and why it failed.
func (e *DialError) Error() string {
	var b strings.Builder
	addrs := make([]string, len(e.Attempts))
	for i, a := range e.Attempts {
		addrs[i] = a.Addr
	}
	tries := "once"
	if e.Rounds > 1 {
		tries = strconv.Itoa(e.Rounds) + " times"
	}
	fmt.Fprintf(&b, "no server answered at %s (each tried %s)", strings.Join(addrs, ", "), tries)
	for _, a := range e.Attempts {
		fmt.Fprintf(&b, "; %v", a.Err)
	}
	return b.String()
}

// Unwrap returns the error of each address, so that errors.Is sees, say,
// syscall.ECONNREFUSED.
func (e *DialError) Unwrap() []error {
	errs := make([]error, len(e.Attempts))
	for i, a := range e.Attempts {
		errs[i] = a.Err
	}
	return errs
}

// rounds is Rounds, or its default.
func (d *Dialer) rounds() int {
	if d.Rounds > 0 {
		return d.Rounds
	}
	return DefaultRounds
}

// DialFrom dials Addrs[start mod len(Addrs)], then, if that fails, the
// addresses after it in order, wrapping around, for up to Rounds passes
// with Backoff between them. It returns the connection and the index in
// Addrs of the address that answered, or a *DialError naming every address
// if none did (or ctx's error, wrapped, if ctx ended first).
func (d *Dialer) DialFrom(ctx context.Context, start int) (*Client, int, error) {
	return d.dialFrom(ctx, start, d.rounds())
}

func (d *Dialer) dialFrom(ctx context.Context, start, rounds int) (*Client, int, error) {
	n := len(d.Addrs)
	if n == 0 {
		return nil, 0, errors.New("dial: no server address")
	}
	start = ((start % n) + n) % n
	attempts := make([]Attempt, n)
	for i := range attempts {
		attempts[i].Addr = d.Addrs[i]
	}
	backoff := d.Backoff
	if backoff <= 0 {
		backoff = DefaultBackoff
	}
	for round := range rounds {
		if round > 0 {
			timer := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil, 0, fmt.Errorf("dial %s: %w", strings.Join(d.Addrs, ","), context.Cause(ctx))
			case <-timer.C:
			}
			backoff = min(2*backoff, maxBackoff)
		}
		for k := range n {
			i := (start + k) % n
			c, err := Dial(ctx, d.Addrs[i], d.Options)
			if err == nil {
				return c, i, nil
			}
			if ctx.Err() != nil {
				return nil, 0, fmt.Errorf("dial %s: %w", strings.Join(d.Addrs, ","), context.Cause(ctx))
			}
			attempts[i].Err = err
		}
	}
	return nil, 0, &DialError{Attempts: attempts, Rounds: rounds}
}

// Connect dials as DialFrom does, but makes one pass over the list
// whatever Rounds says, and returns a Failover holding the connection. A
// list none of whose servers answers at the start is more likely wrong
// than restarting, and nothing is waiting on it yet; Reconnect, which
// follows a loss, makes Rounds passes.
func (d *Dialer) Connect(ctx context.Context, start int) (*Failover, error) {
	c, i, err := d.dialFrom(ctx, start, 1)
	if err != nil {
		return nil, err
	}
	return &Failover{dialer: *d, conn: c, index: i, dials: 1}, nil
}

// ErrFailoverClosed is returned by Reconnect after Close.
var ErrFailoverClosed = errors.New("connection closed")

// Failover is a connection to one server of a list that moves on to the
// next server of the list when asked to: after the connection was lost,
// Reconnect dials the address after the current one first, so the server
// that failed is tried last. Failover does not resend anything: what was
// in flight on a lost connection has an unknown outcome, and the caller
// decides what to do about it.
//
// Client, Addr and Index may be called at any time; Close may be called
// concurrently with the others to end the connection; Reconnect must not
// run concurrently with itself or with use of the Client it replaces.
type Failover struct {
	dialer Dialer

	mu     sync.Mutex
	conn   *Client // nil after a failed Reconnect
	index  int     // of the address conn is (or was last) connected to
	dials  int     // successful dials: the first one and every reconnect
	closed bool
}

// Client is the current connection; nil after a Reconnect that failed.
func (f *Failover) Client() *Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conn
}

// Addr is the address of the current connection (after a failed
// Reconnect, of the connection that was lost).
func (f *Failover) Addr() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dialer.Addrs[f.index]
}

// Index is Addr's index in the address list.
func (f *Failover) Index() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.index
}

// Reconnects is how many times Reconnect succeeded.
func (f *Failover) Reconnects() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dials - 1
}

// Reconnect closes the current connection and dials the addresses starting
// with the one after it, as Dialer.DialFrom does. On failure there is no
// connection (Client returns nil) and the error is a *DialError or ctx's;
// a later Reconnect starts again after the address that was lost.
func (f *Failover) Reconnect(ctx context.Context) error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return ErrFailoverClosed
	}
	old, start := f.conn, f.index+1
	f.conn = nil
	f.mu.Unlock()
	if old != nil {
		_ = old.Close() // already broken: its error says nothing new
	}

	c, i, err := f.dialer.DialFrom(ctx, start)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		_ = c.Close()
		return ErrFailoverClosed
	}
	f.conn, f.index = c, i
	f.dials++
	return nil
}

// Close closes the current connection, and makes every later Reconnect
// fail. Client still returns the closed connection, whose methods then
// fail with a lost connection (net.ErrClosed). Close may be called more
// than once.
func (f *Failover) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.conn == nil {
		f.closed = true
		return nil
	}
	f.closed = true
	return f.conn.Close()
}

// Probe reports, without waiting for more than a millisecond, whether the
// server has already closed or reset the connection: nil means it looks
// open, an error is what the next read would fail with. Call it only when
// every request sent has been answered (say, before sending a command
// after the user paused): a connection found closed then lost no request,
// so the next one can go to another server without doubt about an earlier
// one. Bytes already received stay for ReadReply.
func (c *Client) Probe() error {
	if c.readErr != nil {
		return c.readErr
	}
	want := c.reader.Buffered() + 1
	if want > c.reader.Size() {
		return nil // a full buffer of unread replies: the server was alive
	}
	if err := c.conn.SetReadDeadline(time.Now().Add(probeWait)); err != nil {
		return c.fail(fmt.Errorf("probe connection: set read deadline: %w", err))
	}
	_, err := c.reader.Peek(want)
	if clearErr := c.conn.SetReadDeadline(time.Time{}); clearErr != nil {
		return c.fail(fmt.Errorf("probe connection: clear read deadline: %w", clearErr))
	}
	switch {
	case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
		return nil
	case errors.Is(err, io.EOF):
		return c.fail(fmt.Errorf("probe connection: server closed the connection: %w", io.EOF))
	}
	return c.fail(fmt.Errorf("probe connection: %w", err))
}
