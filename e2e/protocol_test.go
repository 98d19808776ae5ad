package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests speak HaToKuSe over raw TCP to a real gateway, so every byte
// on the wire is checked against docs/protocol.md. The expected bytes are
// written out literally (not taken from gateway/codec), so a change to a
// reply string, the banner or the prompt breaks them.

// Wire constants of HaToKuSe, copied from docs/protocol.md.
const (
	wireBanner     = "Tolerex HaToKuSe server. Type HELP for commands.\r\n"
	wirePrompt     = "tolerex> "
	wireHelp       = "Commands: SET <id> <message> | GET <id> | DEL <id> | PING | HELP | QUIT"
	wireSetUsage   = "ERROR: SET <id> <message>"
	wireGetUsage   = "ERROR: GET <id>"
	wireDelUsage   = "ERROR: DEL <id>"
	wirePingUsage  = "ERROR: PING"
	wireNotNumeric = "ERROR: id must be numeric"
	wireUnknown    = "ERROR: unknown command"

	// protocolMaxMessage is the --max-message-bytes of the prompting
	// cluster; its longest accepted line is 64 bytes more.
	protocolMaxMessage = 1000
	protocolMaxLine    = protocolMaxMessage + 64

	wireTimeout = 10 * time.Second
)

// exchange is one request line and what the server answers it with.
type exchange struct {
	request string
	// reply is the reply line without its "\r\n"; unused for a blank line.
	reply string
	// blank marks a blank request line: no reply line, only a prompt.
	blank bool
}

// exch is a request answered by one reply line.
func exch(request, reply string) exchange { return exchange{request: request, reply: reply} }

// blankLine is a blank request line, answered by a prompt at most.
func blankLine(request string) exchange { return exchange{request: request, blank: true} }

// wire returns the exact bytes the server writes for e.
func (e exchange) wire(prompt bool) string {
	var out string
	if !e.blank {
		out = e.reply + "\r\n"
	}
	if prompt {
		out += wirePrompt
	}
	return out
}

// joinRequests is every request of exchanges, in order.
func joinRequests(exchanges []exchange) []byte {
	var b bytes.Buffer
	for _, e := range exchanges {
		b.WriteString(e.request)
	}
	return b.Bytes()
}

// joinReplies is every byte the server writes for exchanges, in order.
func joinReplies(exchanges []exchange, prompt bool) []byte {
	var b bytes.Buffer
	for _, e := range exchanges {
		b.WriteString(e.wire(prompt))
	}
	return b.Bytes()
}

// checkReplies compares got with the replies to exchanges and names the
// first exchange whose reply differs.
func checkReplies(exchanges []exchange, prompt bool, got []byte) error {
	off := 0
	for i, e := range exchanges {
		want := e.wire(prompt)
		end := min(off+len(want), len(got))
		if string(got[off:end]) != want {
			return fmt.Errorf("reply %d (to %q): got %q, want %q", i, clipForLog(e.request), clipForLog(string(got[off:min(off+len(want)+40, len(got))])), clipForLog(want))
		}
		off = end
	}
	if off != len(got) {
		return fmt.Errorf("%d unexpected bytes after the last reply: %q", len(got)-off, clipForLog(string(got[off:])))
	}
	return nil
}

// clipForLog shortens s for an error message.
func clipForLog(s string) string {
	if len(s) > 200 {
		return s[:200] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}

// wireConn is a raw HaToKuSe connection.
type wireConn struct {
	t      testing.TB
	conn   *net.TCPConn
	prompt bool
}

// dialWire connects to addr; with prompt it reads and checks the greeting.
func dialWire(t testing.TB, addr string, prompt bool) *wireConn {
	t.Helper()
	conn, err := dialRawTCP(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	w := &wireConn{t: t, conn: conn, prompt: prompt}
	if prompt {
		w.expect(wireBanner + wirePrompt)
	}
	return w
}

// dialRawTCP opens a plain TCP connection to addr.
func dialRawTCP(addr string) (*net.TCPConn, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return conn.(*net.TCPConn), nil
}

// send writes data as it is.
func (w *wireConn) send(data string) {
	w.t.Helper()
	_ = w.conn.SetWriteDeadline(time.Now().Add(wireTimeout))
	if _, err := io.WriteString(w.conn, data); err != nil {
		w.t.Fatalf("write %q: %v", clipForLog(data), err)
	}
}

// expect reads exactly len(want) bytes and compares them with want.
func (w *wireConn) expect(want string) {
	w.t.Helper()
	got, err := readExactly(w.conn, len(want))
	if err != nil || string(got) != want {
		w.t.Fatalf("got %q (%v), want %q", clipForLog(string(got)), err, clipForLog(want))
	}
}

// readExactly reads n bytes from conn within wireTimeout.
func readExactly(conn net.Conn, n int) ([]byte, error) {
	_ = conn.SetReadDeadline(time.Now().Add(wireTimeout))
	buf := make([]byte, n)
	m, err := io.ReadFull(conn, buf)
	if err != nil {
		return buf[:m], fmt.Errorf("read %d bytes, got %d: %w", n, m, err)
	}
	return buf, nil
}

// do sends each request on its own and checks its reply before the next.
func (w *wireConn) do(exchanges ...exchange) {
	w.t.Helper()
	for _, e := range exchanges {
		w.send(e.request)
		want := e.wire(w.prompt)
		got, err := readExactly(w.conn, len(want))
		if err != nil || string(got) != want {
			w.t.Fatalf("request %q: got %q (%v), want %q", clipForLog(e.request), clipForLog(string(got)), err, clipForLog(want))
		}
	}
}

// pipeline writes every request in one write and checks all replies.
func (w *wireConn) pipeline(exchanges []exchange) {
	w.t.Helper()
	if err := pipelineOn(w.conn, w.conn, exchanges, w.prompt); err != nil {
		w.t.Fatal(err)
	}
}

// pipelineOn writes the requests of exchanges in one write (from another
// goroutine, so a large batch cannot deadlock against the replies), reads
// the replies through r and checks them.
func pipelineOn(conn *net.TCPConn, r io.Reader, exchanges []exchange, prompt bool) error {
	requests := joinRequests(exchanges)
	want := joinReplies(exchanges, prompt)
	_ = conn.SetDeadline(time.Now().Add(wireTimeout))
	written := make(chan error, 1)
	go func() {
		_, err := conn.Write(requests)
		written <- err
	}()
	got := make([]byte, len(want))
	n, readErr := io.ReadFull(r, got)
	if err := <-written; err != nil {
		return fmt.Errorf("write %d request bytes: %w", len(requests), err)
	}
	if err := checkReplies(exchanges, prompt, got[:n]); err != nil || readErr != nil {
		return fmt.Errorf("read %d of %d reply bytes (%v): %v", n, len(want), readErr, err)
	}
	return nil
}

// expectEOF checks that the server has closed the connection.
func (w *wireConn) expectEOF() {
	w.t.Helper()
	_ = w.conn.SetReadDeadline(time.Now().Add(wireTimeout))
	rest, err := io.ReadAll(w.conn)
	if err != nil || len(rest) != 0 {
		w.t.Fatalf("want EOF, got %q and %v", clipForLog(string(rest)), err)
	}
}

// expectSilence checks that the server writes nothing for d.
func (w *wireConn) expectSilence(d time.Duration) {
	w.t.Helper()
	_ = w.conn.SetReadDeadline(time.Now().Add(d))
	var b [256]byte
	n, err := w.conn.Read(b[:])
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		w.t.Fatalf("want silence, got %q and %v", b[:n], err)
	}
}

// commandExchanges covers every command and every error reply; it uses
// ids 101-105.
func commandExchanges() []exchange {
	return []exchange{
		exch("SET 101 hello world\r\n", "OK"),
		exch("GET 101\r\n", "hello world"),
		exch("get 101\n", "hello world"),
		exch("gEt 0101\n", "hello world"),
		exch("set 102 first\n", "OK"),
		exch("SeT 102 second\r\n", "OK"),
		exch("GET 102\n", "second"),
		exch("  \tSET\t103\t\thello\r\n", "OK"),
		exch("GET 103\r\n", "hello"),
		exch("PING\r\n", "PONG"),
		exch("ping  \r\n", "PONG"),
		exch("PiNg\n", "PONG"),
		exch("HELP\r\n", wireHelp),
		exch("help me please\n", wireHelp),
		blankLine("\r\n"),
		blankLine("\n"),
		blankLine("  \t \r\n"),
		blankLine("\t\n"),
		exch("DEL 101\r\n", "OK"),
		exch("del 101\n", "NOT_FOUND"),
		exch("GET 101\r\n", "NOT_FOUND"),
		exch("GET 104\r\n", "NOT_FOUND"),
		exch("DEL 105\r\n", "NOT_FOUND"),

		// Usage errors: the arity is checked before the id.
		exch("SET\r\n", wireSetUsage),
		exch("set\n", wireSetUsage),
		exch("SET 102\r\n", wireSetUsage),
		exch("SET 102 \r\n", wireSetUsage),
		exch("SET 102   \t\r\n", wireSetUsage),
		exch("SET abc\r\n", wireSetUsage),
		exch("GET\r\n", wireGetUsage),
		exch("get   \n", wireGetUsage),
		exch("GET 102 2\r\n", wireGetUsage),
		exch("GET abc def\r\n", wireGetUsage),
		exch("DEL\r\n", wireDelUsage),
		exch("DEL 102 2\r\n", wireDelUsage),
		exch("PING x\r\n", wirePingUsage),
		exch("ping 1\n", wirePingUsage),

		// Bad ids with the right arity.
		exch("SET abc hello\r\n", wireNotNumeric),
		exch("SET 1.5 hello\n", wireNotNumeric),
		exch("GET 1.5\r\n", wireNotNumeric),
		exch("GET 0x10\r\n", wireNotNumeric),
		exch("GET 1e3\r\n", wireNotNumeric),
		exch("GET 1_000\r\n", wireNotNumeric),
		exch("GET -\r\n", wireNotNumeric),
		exch("GET +\r\n", wireNotNumeric),
		exch("GET --1\r\n", wireNotNumeric),
		exch("GET +-1\r\n", wireNotNumeric),
		exch("GET 1-\r\n", wireNotNumeric),
		exch("GET 1a\r\n", wireNotNumeric),
		exch("GET \u0661\r\n", wireNotNumeric), // Arabic-Indic one
		exch("GET \uff11\r\n", wireNotNumeric), // fullwidth one
		exch("DEL abc\n", wireNotNumeric),

		// Unknown commands.
		exch("PUT 1 x\r\n", wireUnknown),
		exch("GET1\r\n", wireUnknown),
		exch("SETX 1 x\r\n", wireUnknown),
		exch("\r\r\n", wireUnknown),
		exch("\u017fet 1 x\r\n", wireUnknown), // long s does not fold to s
		exch("\x00SET 1 x\n", wireUnknown),
		exch("\vPING\n", wireUnknown),
		exch("QUITX\r\n", wireUnknown),

		// None of the errors changed anything.
		exch("GET 102\r\n", "second"),
		exch("GET 103\r\n", "hello"),
	}
}

// idExchanges covers id spellings and the int64 range; it uses ids 5, 7,
// 0, -5, -7 and the extremes, and deletes what it stored.
func idExchanges() []exchange {
	return []exchange{
		exch("SET -5 minus five\r\n", "OK"),
		exch("GET -5\r\n", "minus five"),
		exch("GET 5\r\n", "NOT_FOUND"),
		exch("SET +7 plus seven\r\n", "OK"),
		exch("GET 7\r\n", "plus seven"),
		exch("GET 007\r\n", "plus seven"),
		exch("GET +0007\r\n", "plus seven"),
		exch("SET 007 zeros\r\n", "OK"),
		exch("GET 7\r\n", "zeros"),
		exch("GET +7\n", "zeros"),
		exch("GET -7\r\n", "NOT_FOUND"),
		exch("SET -0 zero\r\n", "OK"),
		exch("GET 0\r\n", "zero"),
		exch("GET +0\r\n", "zero"),
		exch("GET 0000\r\n", "zero"),
		exch("SET 9223372036854775807 largest\r\n", "OK"),
		exch("GET 9223372036854775807\r\n", "largest"),
		exch("GET +09223372036854775807\r\n", "largest"),
		exch("SET -9223372036854775808 smallest\r\n", "OK"),
		exch("GET -9223372036854775808\r\n", "smallest"),
		exch("GET -0009223372036854775808\n", "smallest"),

		// One past each end is not an id, and never wraps onto another.
		exch("SET 9223372036854775808 wrapped\r\n", wireNotNumeric),
		exch("GET 9223372036854775808\r\n", wireNotNumeric),
		exch("DEL 9223372036854775808\r\n", wireNotNumeric),
		exch("SET -9223372036854775809 wrapped\r\n", wireNotNumeric),
		exch("GET -9223372036854775809\r\n", wireNotNumeric),
		exch("DEL -9223372036854775809\r\n", wireNotNumeric),
		exch("GET 18446744073709551616\r\n", wireNotNumeric),
		exch("GET 99999999999999999999999999\r\n", wireNotNumeric),
		exch("GET 9223372036854775807\r\n", "largest"),
		exch("GET -9223372036854775808\r\n", "smallest"),
		exch("GET -9223372036854775807\r\n", "NOT_FOUND"),
		exch("GET 9223372036854775806\r\n", "NOT_FOUND"),

		exch("DEL 9223372036854775807\r\n", "OK"),
		exch("GET 9223372036854775807\r\n", "NOT_FOUND"),
		exch("DEL -9223372036854775808\r\n", "OK"),
		exch("DEL +007\r\n", "OK"),
		exch("DEL -5\r\n", "OK"),
		exch("DEL 0\n", "OK"),
		exch("GET 7\r\n", "NOT_FOUND"),
	}
}

// allBytesMessage is "x" followed by every byte value except "\n".
func allBytesMessage() string {
	b := []byte{'x'}
	for c := 0; c < 256; c++ {
		if c != '\n' {
			b = append(b, byte(c))
		}
	}
	return string(b)
}

// exactnessExchanges stores awkward messages under ids from base and reads
// them back byte for byte, with both line terminators.
func exactnessExchanges(base int) []exchange {
	messages := []string{
		"hello  world",
		"a\tb",
		"tab\t\tand  spaces \t mixed",
		"hello   ",
		"trailing tab\t",
		"a\x00b",
		"\x00\x00",
		"\xff\xfe",
		"caf\xc3 broken utf-8 \xe2\x82",
		"a\rb",
		"\rstarts with CR",
		"tolerex> ",
		"tolerex> SET 1 fake prompt",
		"GET 2",
		"ERROR: looks like an error",
		"\x7f\x1b[31mescape\x1b[0m",
		"\v\f are not blanks",
		allBytesMessage(),
	}
	var out []exchange
	id := base
	for _, m := range messages {
		out = append(out,
			exch(fmt.Sprintf("SET %d %s\r\n", id, m), "OK"),
			exch(fmt.Sprintf("SET %d %s\n", id+1, m), "OK"),
			exch(fmt.Sprintf("GET %d\r\n", id), m),
			exch(fmt.Sprintf("GET %d\n", id+1), m))
		id += 2
	}
	return append(out,
		// Blanks between the id and the message separate; they are not kept.
		exch(fmt.Sprintf("SET %d \t  hello\r\n", id), "OK"),
		exch(fmt.Sprintf("GET %d\r\n", id), "hello"),
		// Only one CR belongs to the terminator.
		exch(fmt.Sprintf("SET %d a\r\r\n", id+1), "OK"),
		exch(fmt.Sprintf("GET %d\r\n", id+1), "a\r"),
		exch(fmt.Sprintf("SET %d a\r\n", id+2), "OK"),
		exch(fmt.Sprintf("GET %d\r\n", id+2), "a"),
		exch(fmt.Sprintf("SET %d \ta\r\r\r\n", id+3), "OK"),
		exch(fmt.Sprintf("GET %d\r\n", id+3), "a\r\r"),
	)
}

// ordering7 is the per-id ordering check from the leader's contract.
func ordering7() []exchange {
	return []exchange{
		exch("SET 7 a\r\n", "OK"),
		exch("GET 7\r\n", "a"),
		exch("SET 7 b\r\n", "OK"),
		exch("GET 7\r\n", "b"),
		exch("DEL 7\r\n", "OK"),
		exch("GET 7\r\n", "NOT_FOUND"),
	}
}

// mixedPipeline returns n exchanges (ordering7 first) of SETs of fresh
// ids from base, GETs and DELs of ids set earlier in the batch, GETs of
// ids never set, PINGs, invalid lines and blank lines, with the replies a
// correct server gives when they are all sent in one write.
func mixedPipeline(base int64, n int, seed uint64) []exchange {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	invalid := []exchange{
		exch("SET 1\r\n", wireSetUsage),
		exch("GET\n", wireGetUsage),
		exch("DEL 1 2\r\n", wireDelUsage),
		exch("PING now\r\n", wirePingUsage),
		exch("GET x\n", wireNotNumeric),
		exch("SET 9223372036854775808 x\r\n", wireNotNumeric),
		exch("FETCH 1\r\n", wireUnknown),
	}
	terminator := func() string {
		if rng.IntN(2) == 0 {
			return "\n"
		}
		return "\r\n"
	}
	spell := func(id int64) string {
		switch rng.IntN(3) {
		case 0:
			return fmt.Sprintf("+%d", id)
		case 1:
			return fmt.Sprintf("00%d", id)
		default:
			return fmt.Sprintf("%d", id)
		}
	}
	out := ordering7()
	stored := map[int64]string{}
	var used []int64
	next, missing := base, base+1_000_000
	for len(out) < n {
		switch k := rng.IntN(12); {
		case k < 4 || len(used) == 0:
			id := next
			next++
			value := fmt.Sprintf("value %d  of\tbatch %d", id, seed)
			stored[id] = value
			used = append(used, id)
			out = append(out, exch("SET "+spell(id)+" "+value+terminator(), "OK"))
		case k < 7:
			id := used[rng.IntN(len(used))]
			reply := "NOT_FOUND"
			if v, ok := stored[id]; ok {
				reply = v
			}
			out = append(out, exch("GET "+spell(id)+terminator(), reply))
		case k == 7:
			id := used[rng.IntN(len(used))]
			if rng.IntN(2) == 0 {
				value := fmt.Sprintf("overwritten %d", id)
				stored[id] = value
				out = append(out, exch("set "+spell(id)+" "+value+terminator(), "OK"))
				continue
			}
			reply := "NOT_FOUND"
			if _, ok := stored[id]; ok {
				reply = "OK"
			}
			delete(stored, id)
			out = append(out, exch("DEL "+spell(id)+terminator(), reply))
		case k == 8:
			out = append(out, exch(fmt.Sprintf("GET %d%s", missing, terminator()), "NOT_FOUND"))
			missing++
		case k == 9:
			out = append(out, exch("PING"+terminator(), "PONG"))
		case k == 10:
			out = append(out, invalid[rng.IntN(len(invalid))])
		default:
			out = append(out, blankLine([]string{"\n", "\r\n", " \t\r\n"}[rng.IntN(3)]))
		}
	}
	return out
}

// setGetPairs is SET then GET of each id in [base, base+n) with a value
// of size bytes.
func setGetPairs(base int64, n, size int) []exchange {
	out := make([]exchange, 0, 2*n)
	for i := range int64(n) {
		id := base + i
		value := fmt.Sprintf("v%d.", id)
		value += strings.Repeat("z", max(size-len(value), 0))
		out = append(out,
			exch(fmt.Sprintf("SET %d %s\r\n", id, value), "OK"),
			exch(fmt.Sprintf("GET %d\r\n", id), value))
	}
	return out
}

// TestProtocolPrompt runs HaToKuSe against a gateway in its default,
// prompting mode, with --max-message-bytes 1000.
func TestProtocolPrompt(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2,
		GatewayArgs: []string{"--max-message-bytes", fmt.Sprint(protocolMaxMessage)}})
	c.DumpLogsOnFailure(t)
	logProblemsOnFailure(t, c)
	c.Start(t)
	const prompt = true

	t.Run("Greeting", func(t *testing.T) {
		w := dialWire(t, c.ClientAddr, prompt)
		w.expectSilence(200 * time.Millisecond)
		w.do(exch("PING\r\n", "PONG"))
	})
	t.Run("Commands", func(t *testing.T) {
		dialWire(t, c.ClientAddr, prompt).do(commandExchanges()...)
	})
	t.Run("IDs", func(t *testing.T) {
		dialWire(t, c.ClientAddr, prompt).do(idExchanges()...)
	})
	t.Run("MessageExactness", func(t *testing.T) {
		dialWire(t, c.ClientAddr, prompt).do(exactnessExchanges(200)...)
	})
	t.Run("Quit", func(t *testing.T) {
		for _, quit := range []string{"QUIT\r\n", "quit\n", "EXIT\r\n", "exit\n", "  \teXiT now please \r\n"} {
			w := dialWire(t, c.ClientAddr, prompt)
			w.do(exch("PING\r\n", "PONG"))
			w.send(quit)
			w.expect("Bye\r\n")
			w.expectEOF()
		}
	})
	t.Run("QuitPipelined", func(t *testing.T) {
		w := dialWire(t, c.ClientAddr, prompt)
		w.send("SET 600 before quit\r\n\r\nPING\nQUIT\r\nSET 601 after quit\r\nPING\r\n")
		w.expect("OK\r\n" + wirePrompt + wirePrompt + "PONG\r\n" + wirePrompt + "Bye\r\n")
		w.expectEOF()
		// Lines after QUIT were not executed.
		dialWire(t, c.ClientAddr, prompt).do(
			exch("GET 600\r\n", "before quit"),
			exch("GET 601\r\n", "NOT_FOUND"))
	})
	t.Run("HalfClose", func(t *testing.T) {
		checkHalfClose(t, c.ClientAddr, prompt, 300)
	})
	t.Run("LineTooLong", func(t *testing.T) {
		tooLong := fmt.Sprintf("ERROR: line too long (max %d bytes)", protocolMaxLine)
		padded := func(total int, end string) string { // PING, blanks, end: total bytes
			return "PING" + strings.Repeat(" ", total-4-len(end)) + end
		}
		w := dialWire(t, c.ClientAddr, prompt)
		w.do(
			exch(padded(protocolMaxLine, "\r\n"), "PONG"),
			exch(padded(protocolMaxLine, "\n"), "PONG"),
			exch(padded(protocolMaxLine+1, "\n"), tooLong),
			exch(padded(protocolMaxLine+1, "\r\n"), tooLong),
			exch("SET 500 "+strings.Repeat("m", 5000)+"\r\n", tooLong),
			exch("SET 501 "+strings.Repeat("m", 100_000)+"\n", tooLong),
			exch("SET 502 "+strings.Repeat("\x00", 3<<20)+"\r\n", tooLong),
			exch("SET 503 still served\r\n", "OK"),
			exch("GET 503\r\n", "still served"),
			exch("GET 500\r\n", "NOT_FOUND"),
			exch("GET 501\r\n", "NOT_FOUND"),
			exch("GET 502\r\n", "NOT_FOUND"),
		)
		// The same, pipelined in one write.
		w.pipeline([]exchange{
			exch("SET 504 "+strings.Repeat("n", 40_000)+"\r\n", tooLong),
			exch("SET 504 short\r\n", "OK"),
			exch(padded(protocolMaxLine+1, "\n"), tooLong),
			exch("GET 504\r\n", "short"),
		})
	})
	t.Run("LargestMessage", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(7, 7))
		message := make([]byte, protocolMaxMessage)
		for i := range message {
			message[i] = byte(rng.IntN(256))
			for message[i] == '\n' || (i == 0 && (message[i] == ' ' || message[i] == '\t')) {
				message[i] = byte(rng.IntN(256))
			}
		}
		if message[len(message)-1] == '\r' {
			message[len(message)-1] = 'r'
		}
		dialWire(t, c.ClientAddr, prompt).do(
			exch("SET -9223372036854775808 "+string(message)+"\r\n", "OK"),
			exch("GET -9223372036854775808\r\n", string(message)),
			exch("SET 510 "+string(message)+"\n", "OK"),
			exch("GET 510\n", string(message)),
		)
	})
	// The pipelines run last: if one brings the leader down, the other
	// subtests have already run against a healthy cluster.
	pipelineSubtests(t, c.ClientAddr, prompt, 1)
}

// TestProtocolNoPrompt runs HaToKuSe against a gateway started with
// --no-prompt and the default limits.
func TestProtocolNoPrompt(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2, NoPrompt: true})
	c.DumpLogsOnFailure(t)
	logProblemsOnFailure(t, c)
	c.Start(t)
	const prompt = false

	t.Run("NoBanner", func(t *testing.T) {
		w := dialWire(t, c.ClientAddr, prompt)
		w.expectSilence(300 * time.Millisecond)
		w.send("\r\n\n  \r\n")
		w.expectSilence(200 * time.Millisecond)
		w.do(exch("PING\r\n", "PONG"))
	})
	t.Run("Commands", func(t *testing.T) {
		dialWire(t, c.ClientAddr, prompt).do(commandExchanges()...)
	})
	t.Run("IDs", func(t *testing.T) {
		dialWire(t, c.ClientAddr, prompt).do(idExchanges()...)
	})
	t.Run("MessageExactness", func(t *testing.T) {
		w := dialWire(t, c.ClientAddr, prompt)
		w.do(exactnessExchanges(200)...)
		w.pipeline(exactnessExchanges(400))
	})
	t.Run("Quit", func(t *testing.T) {
		for _, quit := range []string{"QUIT\r\n", "exit\n"} {
			w := dialWire(t, c.ClientAddr, prompt)
			w.send("SET 600 x\r\n\r\nGET 600\n" + quit + "DEL 600\r\n")
			w.expect("OK\r\nx\r\nBye\r\n")
			w.expectEOF()
		}
	})
	t.Run("HalfClose", func(t *testing.T) {
		checkHalfClose(t, c.ClientAddr, prompt, 300)
	})
	t.Run("ConcurrentConnections", func(t *testing.T) {
		const conns, pairs = 32, 200
		connections := make([]*net.TCPConn, conns)
		for g := range connections {
			conn, err := dialRawTCP(c.ClientAddr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			connections[g] = conn
		}
		var wg sync.WaitGroup
		for g, conn := range connections {
			exchanges := setGetPairs(int64(100_000+g*1000), pairs, 20+g)
			wg.Go(func() {
				if err := pipelineOn(conn, conn, exchanges, prompt); err != nil {
					t.Errorf("connection %d: %v", g, err)
				}
			})
		}
		wg.Wait()
	})
	t.Run("SlowReaderHugePipeline", func(t *testing.T) {
		// 2500 SET+GET pairs of 4 KiB values: about 10 MiB each way, far
		// more than the socket buffers and the pipeline window, read slowly.
		exchanges := setGetPairs(200_000, 2500, 4096)
		w := dialWire(t, c.ClientAddr, prompt)
		slow := &slowReader{r: w.conn, pauseFirst: 500 * time.Millisecond, chunk: 4096, pauseEvery: 128 << 10, pause: time.Millisecond}
		start := time.Now()
		if err := pipelineOn(w.conn, slow, exchanges, prompt); err != nil {
			t.Fatal(err)
		}
		t.Logf("%d pipelined commands, %d reply bytes read slowly in %s", len(exchanges), slow.total, time.Since(start).Round(time.Millisecond))
		w.do(exch("PING\r\n", "PONG"))
	})
	pipelineSubtests(t, c.ClientAddr, prompt, 2)
}

// pipelineSubtests sends batches of commands in one write each: first the
// per-id ordering cases (ids 7 and 9), then a mixed batch of 500 generated
// from seed (ids from 10000).
func pipelineSubtests(t *testing.T, addr string, prompt bool, seed uint64) {
	t.Run("PipelineSameID", func(t *testing.T) {
		w := dialWire(t, addr, prompt)
		w.pipeline(ordering7())
		// A DEL queued behind another DEL of the same id finds it gone.
		w.pipeline([]exchange{
			exch("SET 9 a\r\n", "OK"),
			exch("DEL 9\r\n", "OK"),
			exch("DEL 9\r\n", "NOT_FOUND"),
			exch("GET 9\r\n", "NOT_FOUND"),
			exch("SET 9 b\r\n", "OK"),
			exch("GET 9\r\n", "b"),
			exch("DEL 9\r\n", "OK"),
			exch("PING\r\n", "PONG"),
		})
	})
	t.Run("PipelineMixed", func(t *testing.T) {
		w := dialWire(t, addr, prompt)
		w.pipeline(mixedPipeline(10_000, 500, seed))
		w.do(exch("PING\r\n", "PONG"))
	})
}

// checkHalfClose writes commands, shuts down the write side and expects every
// reply and then EOF: once for a few commands and once for more commands
// than the pipeline window holds. It uses ids from base.
func checkHalfClose(t *testing.T, addr string, prompt bool, base int64) {
	t.Helper()
	small := []exchange{
		exch(fmt.Sprintf("SET %d half closed\r\n", base), "OK"),
		exch(fmt.Sprintf("GET %d\n", base), "half closed"),
		exch("PING\r\n", "PONG"),
		blankLine("\r\n"),
		exch(fmt.Sprintf("GET %d\r\n", base+1), "NOT_FOUND"),
		exch("HELP\r\n", wireHelp),
		exch("GET\r\n", wireGetUsage),
		exch(fmt.Sprintf("DEL %d\n", base), "OK"),
	}
	large := setGetPairs(base+50_000, 1500, 10)
	for _, exchanges := range [][]exchange{small, large} {
		w := dialWire(t, addr, prompt)
		_ = w.conn.SetDeadline(time.Now().Add(wireTimeout))
		written := make(chan error, 1)
		go func() {
			_, err := w.conn.Write(joinRequests(exchanges))
			if err == nil {
				err = w.conn.CloseWrite()
			}
			written <- err
		}()
		got, err := io.ReadAll(w.conn)
		if werr := <-written; werr != nil {
			t.Fatalf("write and half-close: %v", werr)
		}
		if err != nil {
			t.Fatalf("read until EOF: %v (after %d bytes)", err, len(got))
		}
		if err := checkReplies(exchanges, prompt, got); err != nil {
			t.Fatalf("%d commands then half-close: %v", len(exchanges), err)
		}
	}
}

// slowReader reads at most chunk bytes at a time, waits pauseFirst before
// its first read and pause after every pauseEvery bytes.
type slowReader struct {
	r          io.Reader
	pauseFirst time.Duration
	chunk      int
	pauseEvery int
	pause      time.Duration

	total, sincePause int
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.total == 0 && s.pauseFirst > 0 {
		time.Sleep(s.pauseFirst)
		s.pauseFirst = 0
	}
	if s.sincePause >= s.pauseEvery {
		time.Sleep(s.pause)
		s.sincePause = 0
	}
	n, err := s.r.Read(p[:min(len(p), s.chunk)])
	s.total += n
	s.sincePause += n
	return n, err
}

// logProblemsOnFailure logs every warning and error line of the cluster's
// logs if the test failed: the log tails alone may miss a crash that
// happened early.
func logProblemsOnFailure(t *testing.T, c *Cluster) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range append([]*Process{c.Gateway}, c.Members...) {
			var problems []string
			for _, line := range strings.Split(p.Log(), "\n") {
				if !strings.Contains(line, `"level":"debug"`) && !strings.Contains(line, `"level":"info"`) && line != "" {
					problems = append(problems, line[:min(len(line), 2000)])
				}
			}
			t.Logf("---- %s: %d warning and error lines ----\n%s", p.Name, len(problems), strings.Join(problems, "\n"))
		}
	})
}
