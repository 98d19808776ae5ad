// Package client is a Go client for HaToKuSe, Tolerex's line protocol over
// TCP or TLS. Dial finds out whether the server prompts, and every reply is
// handed back without its line end and without the prompt that precedes it.
//
// A Client offers two layers. Send, Flush and ReadReply pipeline requests
// with no allocation on the hot path: one goroutine may Send and Flush while
// another calls ReadReply, and replies come back in request order. Set, Get,
// Del, Ping and Do make one round trip each and must not be mixed with
// replies still outstanding from Send.
//
// A Dialer connects to the first server of a list of addresses (the
// gateways of one group) that answers, and a Failover is a connection that
// moves on to the next address of the list when the one it uses is lost
// (see Lost). Neither resends anything: a request in flight on a lost
// connection has an unknown outcome, and what to do about it is the
// caller's decision.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/tolerex/tolerex/gateway/codec"
)

// MaxReplyLength is the longest reply, in bytes without prompt and line
// end, that ReadReply accepts. A longer reply fails with ErrLineTooLong
// instead of growing memory without bound.
const MaxReplyLength = 16 << 20

// ErrLineTooLong reports a reply line longer than the client accepts. The
// connection is unusable afterwards.
var ErrLineTooLong = errors.New("reply line too long")

const (
	// bufferSize is the size of the read and write buffers.
	bufferSize = 64 << 10
	// greetingLimit bounds the lines read while detecting the mode: the
	// banner and "PONG" are short, so anything longer is not HaToKuSe.
	greetingLimit = 4 << 10
	// keepLongBuffer is the largest spill buffer kept between replies; a
	// bigger one, grown for one huge reply, is released.
	keepLongBuffer = 1 << 20
	// quoteLimit bounds how much of an unexpected line an error quotes.
	quoteLimit = 80
)

// Options configure Dial. The zero value dials plain TCP without timeouts.
type Options struct {
	// DialTimeout bounds connecting and detecting the server mode; 0 means
	// no limit beyond the context's.
	DialTimeout time.Duration
	// TLSConfig, when not nil, makes Dial use TLS with this configuration.
	// A nil TLSConfig means plain TCP.
	TLSConfig *tls.Config
	// IOTimeout, when positive, bounds the wait for each reply and for
	// each write that reaches the network. A timeout breaks the client.
	IOTimeout time.Duration
}

// ServerError is an "ERROR: <reason>" reply from the server.
type ServerError struct {
	// Reply is the whole reply line, "ERROR: " included.
	Reply string
}

// Error returns the reply exactly as the server sent it.
func (e *ServerError) Error() string { return e.Reply }

// Client is one HaToKuSe connection. See the package comment for which
// methods may run concurrently.
type Client struct {
	conn      net.Conn
	reader    *bufio.Reader
	writer    *bufio.Writer
	ioTimeout time.Duration
	prompting bool
	// readErr, once set, is returned by every later read: after a failed
	// read the position in the reply stream is unknown.
	readErr error
	// long holds a reply line that did not fit in the read buffer.
	long []byte
	// request is scratch space for the one-round-trip helpers.
	request []byte
}

// Dial connects to a HaToKuSe server at addr and detects its mode: it sends
// PING and expects either "PONG" (no-prompt mode) or the banner followed by
// the prompt and "PONG" (prompt mode). Cancelling ctx aborts the dial and the
// detection; it has no effect on the returned Client.
func Dial(ctx context.Context, addr string, opts Options) (*Client, error) {
	dialer := &net.Dialer{Timeout: opts.DialTimeout}
	var conn net.Conn
	var err error
	if opts.TLSConfig != nil {
		tlsDialer := &tls.Dialer{NetDialer: dialer, Config: opts.TLSConfig}
		conn, err = tlsDialer.DialContext(ctx, "tcp", addr)
	} else {
		conn, err = dialer.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dial HaToKuSe server %s: %w", addr, err)
	}
	c := &Client{
		conn:      conn,
		reader:    bufio.NewReaderSize(conn, bufferSize),
		writer:    bufio.NewWriterSize(conn, bufferSize),
		ioTimeout: opts.IOTimeout,
	}
	if err := c.detectMode(ctx, opts); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("greet HaToKuSe server %s: %w", addr, err)
	}
	return c, nil
}

// detectMode runs the PING handshake within the shorter of DialTimeout and
// IOTimeout, and aborts when ctx ends.
func (c *Client) detectMode(ctx context.Context, opts Options) error {
	var deadline time.Time
	for _, limit := range []time.Duration{opts.DialTimeout, opts.IOTimeout} {
		if limit <= 0 {
			continue
		}
		if d := time.Now().Add(limit); deadline.IsZero() || d.Before(deadline) {
			deadline = d
		}
	}
	if err := c.conn.SetDeadline(deadline); err != nil {
		return fmt.Errorf("set handshake deadline: %w", err)
	}
	// Cancelling ctx moves the deadline into the past, which unblocks any
	// read or write in progress.
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	handshakeErr := c.handshake()
	if !stop() || ctx.Err() != nil {
		// The context ended, possibly concurrently with the handshake: its
		// deadline may be in place, so the connection cannot be used.
		return fmt.Errorf("detect server mode: %w", context.Cause(ctx))
	}
	if handshakeErr != nil {
		return handshakeErr
	}
	if err := c.conn.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("clear handshake deadline: %w", err)
	}
	return nil
}

func (c *Client) handshake() error {
	if _, err := c.writer.WriteString("PING" + codec.LineEnd); err != nil {
		return fmt.Errorf("send PING: %w", err)
	}
	if err := c.writer.Flush(); err != nil {
		return fmt.Errorf("send PING: %w", err)
	}
	first, err := c.readLine(greetingLimit)
	if err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	switch string(first) {
	case codec.ReplyPong:
		c.prompting = false
		return nil
	case codec.Banner:
	default:
		return fmt.Errorf("server greeted with %s, want %q (no-prompt mode) or the banner %q (prompt mode)",
			quote(first), codec.ReplyPong, codec.Banner)
	}
	second, err := c.readLine(greetingLimit)
	if err != nil {
		return fmt.Errorf("read PING reply after the banner: %w", err)
	}
	if string(second) != codec.Prompt+codec.ReplyPong {
		return fmt.Errorf("server answered PING after the banner with %s, want %q",
			quote(second), codec.Prompt+codec.ReplyPong)
	}
	c.prompting = true
	return nil
}

// Prompting reports whether the server writes a prompt before each reply
// (prompt mode) rather than bare reply lines (no-prompt mode).
func (c *Client) Prompting() bool { return c.prompting }

// Close closes the connection without sending QUIT. It may be called
// concurrently with other methods to unblock them.
func (c *Client) Close() error {
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("close HaToKuSe connection: %w", err)
	}
	return nil
}

// Send appends line and the line end to the write buffer; Flush writes the
// buffer out. The line must not contain '\n' and must not be blank, since
// the server does not reply to a blank line. Send writes to the network
// only when the buffer is full.
func (c *Client) Send(line []byte) error {
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		return fmt.Errorf("send request: line has a newline at byte %d", i)
	}
	if isBlank(line) {
		return errors.New("send request: blank line (the server does not reply to it)")
	}
	if c.ioTimeout > 0 && c.writer.Available() < len(line)+len(codec.LineEnd) {
		if err := c.conn.SetWriteDeadline(time.Now().Add(c.ioTimeout)); err != nil {
			return fmt.Errorf("send request: set write deadline: %w", err)
		}
	}
	if _, err := c.writer.Write(line); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	if _, err := c.writer.WriteString(codec.LineEnd); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	return nil
}

// Flush writes every buffered request to the server.
func (c *Client) Flush() error {
	if c.writer.Buffered() == 0 {
		return nil
	}
	if c.ioTimeout > 0 {
		if err := c.conn.SetWriteDeadline(time.Now().Add(c.ioTimeout)); err != nil {
			return fmt.Errorf("flush requests: set write deadline: %w", err)
		}
	}
	if err := c.writer.Flush(); err != nil {
		return fmt.Errorf("flush requests: %w", err)
	}
	return nil
}

// ReadReply reads the next reply line and returns it without "\r\n" and,
// in prompt mode, without the one prompt that precedes it. The slice is
// valid until the next call. After an error (a closed connection, a
// timeout, a reply longer than MaxReplyLength, a reply without its prompt)
// every later call fails the same way.
func (c *Client) ReadReply() ([]byte, error) {
	if c.readErr != nil {
		return nil, c.readErr
	}
	if c.ioTimeout > 0 {
		if err := c.conn.SetReadDeadline(time.Now().Add(c.ioTimeout)); err != nil {
			return nil, c.fail(fmt.Errorf("read reply: set read deadline: %w", err))
		}
	}
	limit := MaxReplyLength
	if c.prompting {
		limit += len(codec.Prompt)
	}
	line, err := c.readLine(limit)
	if err != nil {
		return nil, c.fail(fmt.Errorf("read reply: %w", err))
	}
	if c.prompting {
		if !hasPrefix(line, codec.Prompt) {
			return nil, c.fail(fmt.Errorf("read reply: %s lacks the prompt %q", quote(line), codec.Prompt))
		}
		line = line[len(codec.Prompt):]
	}
	return line, nil
}

func (c *Client) fail(err error) error {
	c.readErr = err
	return err
}

// readLine reads one line of at most limit bytes before its line end and
// returns it without "\n" and one "\r" before that.
func (c *Client) readLine(limit int) ([]byte, error) {
	if cap(c.long) > keepLongBuffer {
		c.long = nil
	}
	c.long = c.long[:0]
	// The line end adds up to two bytes to what the limit allows.
	maxRaw := limit + len(codec.LineEnd)
	fragment, err := c.reader.ReadSlice('\n')
	for errors.Is(err, bufio.ErrBufferFull) {
		if len(c.long)+len(fragment) > maxRaw {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrLineTooLong, limit)
		}
		c.long = append(c.long, fragment...)
		fragment, err = c.reader.ReadSlice('\n')
	}
	line := fragment
	if len(c.long) > 0 {
		if len(c.long)+len(fragment) > maxRaw {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrLineTooLong, limit)
		}
		c.long = append(c.long, fragment...)
		line = c.long
	}
	if len(line) > maxRaw {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrLineTooLong, limit)
	}
	if err != nil {
		if !errors.Is(err, io.EOF) {
			return nil, err
		}
		// A prompt alone is what a prompting server leaves after its last
		// reply, so closing after it is a clean end of the stream.
		if len(line) == 0 || (c.prompting && string(line) == codec.Prompt) {
			return nil, fmt.Errorf("server closed the connection: %w", io.EOF)
		}
		return nil, fmt.Errorf("server closed the connection after %d bytes of a line: %w",
			len(line), io.ErrUnexpectedEOF)
	}
	line = codec.TrimLineEnd(line)
	if len(line) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrLineTooLong, limit)
	}
	return line, nil
}

// roundTrip sends c.request, flushes and reads the reply.
func (c *Client) roundTrip() ([]byte, error) {
	if err := c.Send(c.request); err != nil {
		return nil, err
	}
	if err := c.Flush(); err != nil {
		return nil, err
	}
	return c.ReadReply()
}

// Set stores msg under id. The message must be non-empty, must not contain
// '\n' and must not start with a blank (the server would drop it).
func (c *Client) Set(id int64, msg []byte) error {
	switch {
	case len(msg) == 0:
		return fmt.Errorf("SET %d: empty message", id)
	case bytes.IndexByte(msg, '\n') >= 0:
		return fmt.Errorf("SET %d: message contains a newline", id)
	case msg[0] == ' ' || msg[0] == '\t':
		return fmt.Errorf("SET %d: message starts with a blank, which the server would drop", id)
	}
	c.request = append(c.request[:0], "SET "...)
	c.request = strconv.AppendInt(c.request, id, 10)
	c.request = append(c.request, ' ')
	c.request = append(c.request, msg...)
	reply, err := c.roundTrip()
	if err != nil {
		return fmt.Errorf("SET %d: %w", id, err)
	}
	if string(reply) == codec.ReplyOK {
		return nil
	}
	return replyError("SET", id, reply)
}

// Get fetches the message stored under id; found is false if there is
// none. The protocol cannot tell a stored message "NOT_FOUND" from a
// missing one, nor a stored message starting with "ERROR: " from an
// error; Get reads such replies as not found and as a *ServerError.
func (c *Client) Get(id int64) (msg []byte, found bool, err error) {
	c.request = append(c.request[:0], "GET "...)
	c.request = strconv.AppendInt(c.request, id, 10)
	reply, err := c.roundTrip()
	if err != nil {
		return nil, false, fmt.Errorf("GET %d: %w", id, err)
	}
	switch {
	case string(reply) == codec.ReplyNotFound:
		return nil, false, nil
	case hasPrefix(reply, codec.ErrorPrefix):
		return nil, false, &ServerError{Reply: string(reply)}
	}
	return bytes.Clone(reply), true, nil
}

// Del deletes the message stored under id; found is false if there was
// none.
func (c *Client) Del(id int64) (found bool, err error) {
	c.request = append(c.request[:0], "DEL "...)
	c.request = strconv.AppendInt(c.request, id, 10)
	reply, err := c.roundTrip()
	if err != nil {
		return false, fmt.Errorf("DEL %d: %w", id, err)
	}
	switch string(reply) {
	case codec.ReplyOK:
		return true, nil
	case codec.ReplyNotFound:
		return false, nil
	}
	return false, replyError("DEL", id, reply)
}

// Ping checks that the server answers.
func (c *Client) Ping() error {
	c.request = append(c.request[:0], "PING"...)
	reply, err := c.roundTrip()
	if err != nil {
		return fmt.Errorf("PING: %w", err)
	}
	if string(reply) == codec.ReplyPong {
		return nil
	}
	if hasPrefix(reply, codec.ErrorPrefix) {
		return &ServerError{Reply: string(reply)}
	}
	return fmt.Errorf("PING: unexpected reply %s", quote(reply))
}

// Do sends one raw request line and returns the reply. If the reply starts
// with "ERROR: ", Do returns it together with a *ServerError. After
// "QUIT" the server replies "Bye" and closes the connection.
func (c *Client) Do(line string) (string, error) {
	c.request = append(c.request[:0], line...)
	reply, err := c.roundTrip()
	if err != nil {
		return "", err
	}
	text := string(reply)
	if hasPrefix(reply, codec.ErrorPrefix) {
		return text, &ServerError{Reply: text}
	}
	return text, nil
}

// replyError turns a reply that is neither success nor NOT_FOUND into an
// error: a *ServerError for "ERROR: " replies, a protocol error otherwise.
func replyError(verb string, id int64, reply []byte) error {
	if hasPrefix(reply, codec.ErrorPrefix) {
		return &ServerError{Reply: string(reply)}
	}
	return fmt.Errorf("%s %d: unexpected reply %s", verb, id, quote(reply))
}

// hasPrefix reports whether b starts with prefix, without allocating.
func hasPrefix(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == prefix
}

// isBlank reports whether line holds only spaces and tabs, which the
// server treats as an empty request.
func isBlank(line []byte) bool {
	for _, ch := range line {
		if ch != ' ' && ch != '\t' {
			return false
		}
	}
	return true
}

// quote renders the start of an unexpected line for an error message.
func quote(line []byte) string {
	if len(line) > quoteLimit {
		return fmt.Sprintf("%q (%d bytes)", line[:quoteLimit], len(line))
	}
	return fmt.Sprintf("%q", line)
}
