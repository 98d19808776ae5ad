package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeGateway is a HaToKuSe server on a real listener that a test kills
// the way a process dies: its listener closes (new connections are
// refused) and so does every connection it accepted.
type fakeGateway struct {
	addr     string
	listener net.Listener
	wg       sync.WaitGroup

	mu     sync.Mutex
	conns  []net.Conn
	killed bool
}

// startFakeGateway serves handle on 127.0.0.1 until killed or the test
// ends.
func startFakeGateway(t *testing.T, handle func(net.Conn)) *fakeGateway {
	t.Helper()
	g := &fakeGateway{listener: listen(t)}
	g.addr = g.listener.Addr().String()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			conn, err := g.listener.Accept()
			if err != nil {
				return
			}
			g.mu.Lock()
			if g.killed {
				g.mu.Unlock()
				_ = conn.Close()
				return
			}
			g.conns = append(g.conns, conn)
			g.mu.Unlock()
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				defer conn.Close()
				handle(conn)
			}()
		}
	}()
	t.Cleanup(func() { g.kill(false) })
	return g
}

// kill closes the listener and every connection; with reset, the
// connections are reset (RST) rather than closed (FIN), as when a process
// dies with unread input.
func (g *fakeGateway) kill(reset bool) {
	g.mu.Lock()
	g.killed = true
	_ = g.listener.Close()
	for _, conn := range g.conns {
		if tcp, ok := conn.(*net.TCPConn); ok && reset {
			_ = tcp.SetLinger(0)
		}
		_ = conn.Close()
	}
	g.conns = nil
	g.mu.Unlock()
	g.wg.Wait()
}

// refusedAddr is an address on 127.0.0.1 where nothing listens.
func refusedAddr(t *testing.T) string {
	t.Helper()
	listener := listen(t)
	addr := listener.Addr().String()
	_ = listener.Close()
	return addr
}

// quickDialer dials addrs with short timeouts and one pass unless rounds
// says otherwise.
func quickDialer(addrs []string, rounds int) *Dialer {
	return &Dialer{
		Addrs:   addrs,
		Options: Options{DialTimeout: 5 * time.Second, IOTimeout: 5 * time.Second},
		Rounds:  rounds,
		Backoff: time.Millisecond,
	}
}

func TestParseAddrs(t *testing.T) {
	good := []struct {
		in   string
		want []string
	}{
		{"127.0.0.1:6666", []string{"127.0.0.1:6666"}},
		{"127.0.0.1:6666,127.0.0.1:6667", []string{"127.0.0.1:6666", "127.0.0.1:6667"}},
		{" a:1 , b:2,c:3 ", []string{"a:1", "b:2", "c:3"}},
		{"[::1]:6666,localhost:6667", []string{"[::1]:6666", "localhost:6667"}},
	}
	for _, tc := range good {
		got, err := ParseAddrs(tc.in)
		if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("ParseAddrs(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	bad := []struct{ in, want string }{
		{"", "no address"},
		{"  ", "no address"},
		{"a:1,", "entry 2 is empty"},
		{",a:1", "entry 1 is empty"},
		{"a:1,,b:2", "entry 2 is empty"},
		{"a:1,b", "entry 2"},
		{"a:1,b:http", "not a number"},
		{"a:0", "not a number"},
		{"a:70000", "not a number"},
		{"a:1,b:2,a:1", "a:1 is given twice"},
	}
	for _, tc := range bad {
		if got, err := ParseAddrs(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseAddrs(%q) = %q, %v; want an error containing %q", tc.in, got, err, tc.want)
		}
	}
}

func TestLost(t *testing.T) {
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	cases := []struct {
		err  error
		lost bool
	}{
		{nil, false},
		{errors.New("something else"), false},
		{&ServerError{Reply: "ERROR: outcome unknown: leader stopping"}, false},
		{fmt.Errorf("read reply: %w", ErrLineTooLong), false},
		{fmt.Errorf("read reply: %s lacks the prompt", "x"), false},
		{fmt.Errorf("read reply: server closed the connection: %w", io.EOF), true},
		{fmt.Errorf("read reply: %w", io.ErrUnexpectedEOF), true},
		{fmt.Errorf("flush requests: %w", &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}), true},
		{fmt.Errorf("read reply: %w", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}), true},
		{fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), true},
		{fmt.Errorf("read reply: %w", timeout), true},
		{fmt.Errorf("read reply: %w", net.ErrClosed), true},
	}
	for _, tc := range cases {
		if got := Lost(tc.err); got != tc.lost {
			t.Errorf("Lost(%v) = %v, want %v", tc.err, got, tc.lost)
		}
	}
}

func TestDialFromSkipsAddressesThatDoNotAnswer(t *testing.T) {
	live := startFakeGateway(t, serveHaToKuSe(false))
	// Not HaToKuSe: it answers the PING with something else.
	foreign := startFakeGateway(t, func(conn net.Conn) { _, _ = io.WriteString(conn, "HTTP/1.1 400 Bad Request\r\n") })
	dead := refusedAddr(t)
	d := quickDialer([]string{dead, foreign.addr, live.addr}, 1)
	for start := range 4 {
		c, i, err := d.DialFrom(context.Background(), start)
		if err != nil {
			t.Fatalf("DialFrom(%d): %v", start, err)
		}
		if i != 2 {
			t.Errorf("DialFrom(%d) connected to index %d, want 2 (the only server that speaks HaToKuSe)", start, i)
		}
		if err := c.Ping(); err != nil {
			t.Errorf("Ping after DialFrom(%d): %v", start, err)
		}
		_ = c.Close()
	}
}

func TestDialFromStartsWhereAsked(t *testing.T) {
	a := startFakeGateway(t, serveHaToKuSe(false))
	b := startFakeGateway(t, serveHaToKuSe(true))
	d := quickDialer([]string{a.addr, b.addr}, 1)
	for start, want := range []int{0, 1, 0, 1} {
		c, i, err := d.DialFrom(context.Background(), start)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		if i != want {
			t.Errorf("DialFrom(%d) connected to %d, want %d (round robin)", start, i, want)
		}
	}
}

func TestDialFromNamesEveryAddressWhenNoneAnswers(t *testing.T) {
	addrs := []string{refusedAddr(t), refusedAddr(t), refusedAddr(t)}
	d := quickDialer(addrs, 3)
	start := time.Now()
	_, _, err := d.DialFrom(context.Background(), 1)
	var dialErr *DialError
	if !errors.As(err, &dialErr) {
		t.Fatalf("DialFrom with nothing listening = %v, want a *DialError", err)
	}
	if dialErr.Rounds != 3 || len(dialErr.Attempts) != 3 {
		t.Errorf("DialError %+v, want 3 rounds over 3 addresses", dialErr)
	}
	for _, addr := range addrs {
		if !strings.Contains(err.Error(), addr) {
			t.Errorf("error %q does not name %s", err, addr)
		}
	}
	if !strings.Contains(err.Error(), "each tried 3 times") {
		t.Errorf("error %q does not say how often each address was tried", err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) || !Lost(err) {
		t.Errorf("error %q: errors.Is ECONNREFUSED %v, Lost %v; want both", err, errors.Is(err, syscall.ECONNREFUSED), Lost(err))
	}
	// Backoff 1 ms doubling: the two pauses take 3 ms.
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("three refused passes took %v", elapsed)
	}
}

func TestDialFromHonoursContext(t *testing.T) {
	d := &Dialer{Addrs: []string{refusedAddr(t)}, Rounds: 1000, Backoff: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := d.DialFrom(ctx, 0)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("DialFrom after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("DialFrom ignored the cancelled context")
	}
}

// TestFailoverMovesToTheNextGateway kills the gateway a connection uses in
// the middle of a session and checks that the request in flight fails
// with a lost connection (and is not resent), and that Reconnect moves on
// to the next gateway of the list, wrapping around.
func TestFailoverMovesToTheNextGateway(t *testing.T) {
	for _, reset := range []bool{false, true} {
		name := "closed"
		if reset {
			name = "reset"
		}
		t.Run(name, func(t *testing.T) {
			// The three gateways share nothing: each has its own store, so a
			// value found shows which one answered.
			gws := []*fakeGateway{
				startFakeGateway(t, serveHaToKuSe(true)),
				startFakeGateway(t, serveHaToKuSe(false)),
				startFakeGateway(t, serveHaToKuSe(true)),
			}
			addrs := []string{gws[0].addr, gws[1].addr, gws[2].addr}
			f, err := quickDialer(addrs, 1).Connect(context.Background(), 1)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Index() != 1 || f.Addr() != addrs[1] {
				t.Fatalf("connected to %d (%s), want 1", f.Index(), f.Addr())
			}
			if err := f.Client().Set(1, []byte("on gateway 2")); err != nil {
				t.Fatal(err)
			}

			gws[1].kill(reset)
			_, _, err = f.Client().Get(1)
			if !Lost(err) {
				t.Fatalf("Get from a killed gateway = %v, want a lost connection", err)
			}
			if err := f.Reconnect(context.Background()); err != nil {
				t.Fatalf("Reconnect: %v", err)
			}
			if f.Index() != 2 || f.Addr() != addrs[2] || f.Reconnects() != 1 {
				t.Fatalf("after the loss: index %d (%s), %d reconnects; want 2 (the next) and 1", f.Index(), f.Addr(), f.Reconnects())
			}
			if _, found, err := f.Client().Get(1); err != nil || found {
				t.Fatalf("Get on gateway 3 = found %v, %v; want its own (empty) store", found, err)
			}

			gws[2].kill(reset)
			if err := f.Client().Ping(); !Lost(err) {
				t.Fatalf("Ping on a killed gateway = %v, want a lost connection", err)
			}
			// Gateway 2 is dead too: the list wraps to gateway 1.
			if err := f.Reconnect(context.Background()); err != nil {
				t.Fatalf("second Reconnect: %v", err)
			}
			if f.Index() != 0 || f.Reconnects() != 2 {
				t.Fatalf("after the second loss: index %d, %d reconnects; want 0 and 2", f.Index(), f.Reconnects())
			}
			if err := f.Client().Ping(); err != nil {
				t.Fatal(err)
			}

			gws[0].kill(reset)
			err = f.Reconnect(context.Background())
			var dialErr *DialError
			if !errors.As(err, &dialErr) {
				t.Fatalf("Reconnect with every gateway dead = %v, want a *DialError", err)
			}
			for _, addr := range addrs {
				if !strings.Contains(err.Error(), addr) {
					t.Errorf("error %q does not name %s", err, addr)
				}
			}
			if f.Client() != nil || f.Addr() != addrs[0] {
				t.Errorf("after a failed Reconnect: client %v, addr %s; want none and the lost %s", f.Client(), f.Addr(), addrs[0])
			}
		})
	}
}

func TestFailoverClose(t *testing.T) {
	gw := startFakeGateway(t, serveHaToKuSe(false))
	f, err := quickDialer([]string{gw.addr}, 1).Connect(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	c := f.Client()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := c.Ping(); !Lost(err) {
		t.Errorf("Ping after Close = %v, want a lost (closed) connection", err)
	}
	if err := f.Reconnect(context.Background()); !errors.Is(err, ErrFailoverClosed) {
		t.Errorf("Reconnect after Close = %v, want ErrFailoverClosed", err)
	}
}

// closingAfterOneReply answers the handshake and one request, then closes
// the connection and reports that it did.
func closingAfterOneReply(prompting bool, closed chan<- struct{}) func(net.Conn) {
	serve := serveHaToKuSe(prompting)
	return func(conn net.Conn) {
		limited := &oneRequestConn{Conn: conn, requests: 2} // PING, then one
		serve(limited)
		_ = conn.Close()
		closed <- struct{}{}
	}
}

// oneRequestConn ends its input (EOF) once it has read the given number
// of request lines; the server then finishes the last one and returns.
type oneRequestConn struct {
	net.Conn
	requests int
}

func (c *oneRequestConn) Read(p []byte) (int, error) {
	if c.requests == 0 {
		return 0, io.EOF
	}
	// One byte at a time, so the count of lines is exact.
	n, err := c.Conn.Read(p[:1])
	if n == 1 && p[0] == '\n' {
		c.requests--
	}
	return n, err
}

func TestProbe(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			closed := make(chan struct{}, 1)
			gw := startFakeGateway(t, closingAfterOneReply(mode.prompting, closed))
			c := dial(t, gw.addr, Options{IOTimeout: 5 * time.Second})
			// Idle and open: the probe sees nothing and leaves the stream as
			// it was (in prompt mode, the prompt after PONG stays).
			if err := c.Probe(); err != nil {
				t.Fatalf("Probe of an open idle connection = %v", err)
			}
			if err := c.Set(1, []byte("x")); err != nil {
				t.Fatalf("Set after Probe: %v", err)
			}
			<-closed
			err := c.Probe()
			if err == nil || !Lost(err) || !errors.Is(err, io.EOF) {
				t.Fatalf("Probe after the server closed = %v, want a lost connection (EOF)", err)
			}
			if err := c.Ping(); !errors.Is(err, io.EOF) {
				t.Fatalf("Ping after a failed Probe = %v, want the same EOF", err)
			}
		})
	}
}

func TestProbeOverTLS(t *testing.T) {
	serverConfig, clientConfig := selfSignedTLS(t)
	closed := make(chan struct{}, 1)
	listener := tls.NewListener(listen(t), serverConfig)
	addr := startServer(t, listener, closingAfterOneReply(false, closed))
	c := dial(t, addr, Options{TLSConfig: clientConfig, DialTimeout: 5 * time.Second, IOTimeout: 5 * time.Second})
	for range 3 { // a timed-out probe leaves a TLS connection usable
		if err := c.Probe(); err != nil {
			t.Fatalf("Probe of an open TLS connection = %v", err)
		}
	}
	if err := c.Set(1, []byte("x")); err != nil {
		t.Fatalf("Set after Probe: %v", err)
	}
	<-closed
	if err := c.Probe(); !Lost(err) {
		t.Fatalf("Probe after the server closed = %v, want a lost connection", err)
	}
}

func TestConnectMakesOnePass(t *testing.T) {
	d := &Dialer{Addrs: []string{refusedAddr(t), refusedAddr(t)}, Rounds: 1000, Backoff: time.Hour}
	_, err := d.Connect(context.Background(), 0)
	var dialErr *DialError
	if !errors.As(err, &dialErr) || dialErr.Rounds != 1 {
		t.Fatalf("Connect with nothing listening = %v, want a *DialError after one pass", err)
	}
}

// TestFailoverAfterIOTimeout: a gateway that stops answering (paused, cut
// off) counts as lost once the I/O timeout passes, and Reconnect moves on.
func TestFailoverAfterIOTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	silent := startFakeGateway(t, afterHandshake(false, func(*bufio.Reader, net.Conn) { <-release }))
	live := startFakeGateway(t, serveHaToKuSe(true))
	d := &Dialer{Addrs: []string{silent.addr, live.addr}, Options: Options{DialTimeout: 5 * time.Second, IOTimeout: 100 * time.Millisecond}, Rounds: 1}
	f, err := d.Connect(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = f.Client().Set(1, []byte("x"))
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() || !Lost(err) {
		t.Fatalf("Set on a silent gateway = %v, want a timeout that counts as lost", err)
	}
	if err := f.Reconnect(context.Background()); err != nil || f.Addr() != live.addr {
		t.Fatalf("Reconnect after a timeout: %v, at %s; want %s", err, f.Addr(), live.addr)
	}
	if err := f.Client().Ping(); err != nil {
		t.Fatal(err)
	}
}
