package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tolerex/tolerex/gateway/codec"
)

// startServer accepts connections on a real listener on 127.0.0.1 and runs
// handle on each; the test's cleanup closes everything and waits.
func startServer(t *testing.T, listener net.Listener, handle func(net.Conn)) string {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				handle(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = listener.Close()
		mu.Lock()
		for _, conn := range conns {
			_ = conn.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return listener.Addr().String()
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return listener
}

// messageStore is the scripted server's data, shared by its connections.
type messageStore struct {
	mu       sync.Mutex
	messages map[int64]string
}

// serveHaToKuSe speaks HaToKuSe the way the protocol documents it: it
// parses every request with the codec, answers from an in-memory store,
// writes the banner and a prompt after every reply when prompting, answers
// pipelined requests in order and closes after "Bye".
func serveHaToKuSe(prompting bool) func(net.Conn) {
	store := &messageStore{messages: make(map[int64]string)}
	return func(conn net.Conn) {
		reader := bufio.NewReader(conn)
		writer := bufio.NewWriter(conn)
		if prompting {
			writer.WriteString(codec.Banner + codec.LineEnd + codec.Prompt)
			if writer.Flush() != nil {
				return
			}
		}
		for {
			line, err := reader.ReadBytes('\n')
			if err != nil {
				return
			}
			command := codec.Parse(line)
			var reply string
			switch command.Kind {
			case codec.KindEmpty:
				if prompting {
					writer.WriteString(codec.Prompt)
				}
				if flushIfIdle(reader, writer) != nil {
					return
				}
				continue
			case codec.KindQuit:
				writer.WriteString(codec.ReplyBye + codec.LineEnd)
				writer.Flush()
				return
			case codec.KindInvalid:
				reply = command.Reply
			case codec.KindPing:
				reply = codec.ReplyPong
			case codec.KindHelp:
				reply = codec.Help
			case codec.KindSet:
				store.mu.Lock()
				store.messages[command.ID] = string(command.Message)
				store.mu.Unlock()
				reply = codec.ReplyOK
			case codec.KindGet:
				store.mu.Lock()
				message, ok := store.messages[command.ID]
				store.mu.Unlock()
				reply = codec.ReplyNotFound
				if ok {
					reply = message
				}
			case codec.KindDel:
				store.mu.Lock()
				_, ok := store.messages[command.ID]
				delete(store.messages, command.ID)
				store.mu.Unlock()
				reply = codec.ReplyNotFound
				if ok {
					reply = codec.ReplyOK
				}
			}
			writer.WriteString(reply + codec.LineEnd)
			if prompting {
				writer.WriteString(codec.Prompt)
			}
			if flushIfIdle(reader, writer) != nil {
				return
			}
		}
	}
}

// flushIfIdle flushes the replies once no complete request is buffered, so
// pipelined requests get batched replies and a waiting client is answered.
func flushIfIdle(reader *bufio.Reader, writer *bufio.Writer) error {
	buffered, _ := reader.Peek(reader.Buffered())
	if bytes.IndexByte(buffered, '\n') >= 0 {
		return nil
	}
	return writer.Flush()
}

// afterHandshake answers the client's PING like a server in the given mode
// and then hands the connection to rest.
func afterHandshake(prompting bool, rest func(reader *bufio.Reader, conn net.Conn)) func(net.Conn) {
	return func(conn net.Conn) {
		reader := bufio.NewReader(conn)
		greeting := ""
		if prompting {
			greeting = codec.Banner + codec.LineEnd + codec.Prompt
		}
		if _, err := io.WriteString(conn, greeting); err != nil {
			return
		}
		line, err := reader.ReadBytes('\n')
		if err != nil || codec.Parse(line).Kind != codec.KindPing {
			return
		}
		reply := codec.ReplyPong + codec.LineEnd
		if prompting {
			reply += codec.Prompt
		}
		if _, err := io.WriteString(conn, reply); err != nil {
			return
		}
		rest(reader, conn)
	}
}

func dial(t *testing.T, addr string, opts Options) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, opts)
	if err != nil {
		t.Fatalf("Dial(%s): %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var modes = []struct {
	name      string
	prompting bool
}{
	{"prompt", true},
	{"no-prompt", false},
}

func TestDialDetectsMode(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			c := dial(t, startServer(t, listen(t), serveHaToKuSe(mode.prompting)), Options{DialTimeout: 5 * time.Second})
			if c.Prompting() != mode.prompting {
				t.Fatalf("Prompting() = %v, want %v", c.Prompting(), mode.prompting)
			}
			// The handshake must leave the stream aligned on the next reply.
			if err := c.Ping(); err != nil {
				t.Fatalf("Ping after Dial: %v", err)
			}
		})
	}
}

func TestDialRejectsWhatIsNotHaToKuSe(t *testing.T) {
	cases := []struct {
		name     string
		greeting string
		want     string
	}{
		{"other protocol", "SSH-2.0-OpenSSH_9.6\r\n", `"SSH-2.0-OpenSSH_9.6"`},
		{"banner then wrong reply", codec.Banner + "\r\n" + codec.Prompt + "OK\r\n", `"tolerex> OK"`},
		{"banner then bare PONG", codec.Banner + "\r\nPONG\r\n", `"PONG"`},
		{"endless line", strings.Repeat("x", 3*greetingLimit), ErrLineTooLong.Error()},
		{"closed at once", "", "server closed the connection"},
		{"closed mid-banner", codec.Banner[:10], "server closed the connection after 10 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := startServer(t, listen(t), func(conn net.Conn) {
				// Read the PING first so the close does not reset the
				// connection before the client reads the greeting.
				line, err := bufio.NewReader(conn).ReadBytes('\n')
				if err != nil || codec.Parse(line).Kind != codec.KindPing {
					return
				}
				_, _ = io.WriteString(conn, tc.greeting)
			})
			c, err := Dial(context.Background(), addr, Options{DialTimeout: 5 * time.Second})
			if err == nil {
				_ = c.Close()
				t.Fatal("Dial succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Dial error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestDialHonoursContext(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	addr := startServer(t, listen(t), func(conn net.Conn) {
		<-release // never answers the PING
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := Dial(ctx, addr, Options{})
	if err == nil {
		_ = c.Close()
		t.Fatal("Dial succeeded against a silent server")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial error = %v, want context.DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("Dial took %v to give up", elapsed)
	}
}

func TestRoundTrips(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			c := dial(t, startServer(t, listen(t), serveHaToKuSe(mode.prompting)), Options{IOTimeout: 5 * time.Second})

			if _, found, err := c.Get(1); err != nil || found {
				t.Fatalf("Get(1) on empty store: found=%v err=%v", found, err)
			}
			messages := map[int64]string{
				1:  "hello world",
				2:  codec.Prompt + "looks like a prompt",
				3:  codec.Prompt,
				-4: "binary \x00\xff\r middle and trailing blanks \t ",
				5:  "ends in a carriage return\r",
			}
			for id, message := range messages {
				if err := c.Set(id, []byte(message)); err != nil {
					t.Fatalf("Set(%d, %q): %v", id, message, err)
				}
			}
			for id, message := range messages {
				got, found, err := c.Get(id)
				if err != nil || !found || string(got) != message {
					t.Fatalf("Get(%d) = %q, %v, %v; want %q", id, got, found, err, message)
				}
			}
			if found, err := c.Del(1); err != nil || !found {
				t.Fatalf("Del(1) = %v, %v; want found", found, err)
			}
			if found, err := c.Del(1); err != nil || found {
				t.Fatalf("second Del(1) = %v, %v; want not found", found, err)
			}
			if _, found, err := c.Get(1); err != nil || found {
				t.Fatalf("Get(1) after Del: found=%v err=%v", found, err)
			}
			if err := c.Ping(); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			if reply, err := c.Do("help"); err != nil || reply != codec.Help {
				t.Fatalf("Do(help) = %q, %v", reply, err)
			}
			if reply, err := c.Do("QUIT"); err != nil || reply != codec.ReplyBye {
				t.Fatalf("Do(QUIT) = %q, %v", reply, err)
			}
			_, err := c.ReadReply()
			if !errors.Is(err, io.EOF) {
				t.Fatalf("ReadReply after Bye = %v, want io.EOF", err)
			}
			if err := c.Ping(); err == nil {
				t.Fatal("Ping after the server closed succeeded")
			}
		})
	}
}

func TestServerErrorsAndLocalChecks(t *testing.T) {
	c := dial(t, startServer(t, listen(t), serveHaToKuSe(true)), Options{IOTimeout: 5 * time.Second})

	reply, err := c.Do("BOGUS 1")
	var serverErr *ServerError
	if !errors.As(err, &serverErr) || serverErr.Reply != codec.ErrUnknown || reply != codec.ErrUnknown {
		t.Fatalf("Do(BOGUS 1) = %q, %v; want a ServerError %q", reply, err, codec.ErrUnknown)
	}
	if err := c.Ping(); err != nil {
		t.Fatalf("Ping after a server error: %v", err)
	}

	// Requests the client refuses must not reach the server, or the reply
	// stream would no longer match the requests.
	for name, message := range map[string]string{
		"empty":         "",
		"newline":       "two\nlines",
		"leading blank": " indented",
	} {
		if err := c.Set(7, []byte(message)); err == nil {
			t.Fatalf("Set with a %s message succeeded", name)
		}
	}
	if err := c.Send([]byte(" \t ")); err == nil {
		t.Fatal("Send of a blank line succeeded")
	}
	if err := c.Send([]byte("PING\nPING")); err == nil {
		t.Fatal("Send of a line with a newline succeeded")
	}
	if _, found, err := c.Get(7); err != nil || found {
		t.Fatalf("Get(7) after refused Sets: found=%v err=%v", found, err)
	}

	// The documented ambiguity: stored values that look like replies.
	if err := c.Set(8, []byte("ERROR: stored")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(8); !errors.As(err, &serverErr) || serverErr.Reply != "ERROR: stored" {
		t.Fatalf("Get of a value starting with ERROR: = %v, want a ServerError", err)
	}
	if err := c.Set(9, []byte(codec.ReplyNotFound)); err != nil {
		t.Fatal(err)
	}
	if _, found, err := c.Get(9); err != nil || found {
		t.Fatalf("Get of the value NOT_FOUND: found=%v err=%v; want not found", found, err)
	}
}

func TestPipelining(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			c := dial(t, startServer(t, listen(t), serveHaToKuSe(mode.prompting)), Options{IOTimeout: 10 * time.Second})
			const n = 1000
			var line []byte
			for i := range n {
				line = fmt.Appendf(line[:0], "SET %d value-%d", i, i)
				if err := c.Send(line); err != nil {
					t.Fatalf("Send: %v", err)
				}
			}
			if err := c.Flush(); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			for i := range n {
				reply, err := c.ReadReply()
				if err != nil || string(reply) != codec.ReplyOK {
					t.Fatalf("reply %d = %q, %v; want OK", i, reply, err)
				}
			}
			for i := range n {
				line = fmt.Appendf(line[:0], "GET %d", i)
				if err := c.Send(line); err != nil {
					t.Fatalf("Send: %v", err)
				}
			}
			if err := c.Flush(); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			for i := range n {
				reply, err := c.ReadReply()
				if want := "value-" + strconv.Itoa(i); err != nil || string(reply) != want {
					t.Fatalf("reply %d = %q, %v; want %q", i, reply, err, want)
				}
			}
		})
	}
}

// TestConcurrentSendAndRead runs a writer and a reader goroutine on one
// client, the way a load generator does.
func TestConcurrentSendAndRead(t *testing.T) {
	c := dial(t, startServer(t, listen(t), serveHaToKuSe(true)), Options{IOTimeout: 10 * time.Second})
	const n = 20000
	writeErr := make(chan error, 1)
	go func() {
		var line []byte
		for i := range n {
			line = fmt.Appendf(line[:0], "SET %d v%d", i, i)
			if err := c.Send(line); err != nil {
				writeErr <- err
				return
			}
			if i%100 == 99 {
				if err := c.Flush(); err != nil {
					writeErr <- err
					return
				}
			}
		}
		writeErr <- c.Flush()
	}()
	for i := range n {
		reply, err := c.ReadReply()
		if err != nil || string(reply) != codec.ReplyOK {
			t.Fatalf("reply %d = %q, %v", i, reply, err)
		}
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("writer: %v", err)
	}
	if got, found, err := c.Get(n - 1); err != nil || !found || string(got) != fmt.Sprintf("v%d", n-1) {
		t.Fatalf("Get(%d) = %q, %v, %v", n-1, got, found, err)
	}
}

func TestOverlongReplyIsBounded(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			addr := startServer(t, listen(t), afterHandshake(mode.prompting, func(reader *bufio.Reader, conn net.Conn) {
				if _, err := reader.ReadBytes('\n'); err != nil {
					return
				}
				// A line that never ends: only a bounded reader returns.
				chunk := bytes.Repeat([]byte("x"), 64<<10)
				for {
					if _, err := conn.Write(chunk); err != nil {
						return
					}
				}
			}))
			c := dial(t, addr, Options{IOTimeout: 20 * time.Second})
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, _, err := c.Get(1)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrLineTooLong) {
				t.Fatalf("Get on an endless reply = %v, want ErrLineTooLong", err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 8*MaxReplyLength {
				t.Fatalf("reading the endless reply allocated %d bytes", grew)
			}
			if _, err := c.ReadReply(); !errors.Is(err, ErrLineTooLong) {
				t.Fatalf("ReadReply after the overlong line = %v, want the same error", err)
			}
		})
	}
}

func TestLongReplyWithinLimit(t *testing.T) {
	c := dial(t, startServer(t, listen(t), serveHaToKuSe(true)), Options{IOTimeout: 20 * time.Second})
	message := bytes.Repeat([]byte("0123456789abcdef"), (1<<20)/16) // 1 MiB, 16 read buffers
	if err := c.Set(1, message); err != nil {
		t.Fatalf("Set of 1 MiB: %v", err)
	}
	got, found, err := c.Get(1)
	if err != nil || !found || !bytes.Equal(got, message) {
		t.Fatalf("Get of 1 MiB: %d bytes, found=%v, err=%v", len(got), found, err)
	}
}

func TestConnectionClosedMidReply(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			addr := startServer(t, listen(t), afterHandshake(mode.prompting, func(reader *bufio.Reader, conn net.Conn) {
				if _, err := reader.ReadBytes('\n'); err != nil {
					return
				}
				_, _ = io.WriteString(conn, "half a rep")
			}))
			c := dial(t, addr, Options{IOTimeout: 5 * time.Second})
			_, _, err := c.Get(1)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("Get cut short = %v, want io.ErrUnexpectedEOF", err)
			}
		})
	}
}

func TestReplyWithoutPromptIsAnError(t *testing.T) {
	addr := startServer(t, listen(t), afterHandshake(true, func(reader *bufio.Reader, conn net.Conn) {
		if _, err := reader.ReadBytes('\n'); err != nil {
			return
		}
		// The prompt was already sent after PONG; a second reply line
		// arrives without one.
		_, _ = io.WriteString(conn, "PONG\r\nPONG\r\n")
		_, _ = reader.ReadBytes('\n')
	}))
	c := dial(t, addr, Options{IOTimeout: 5 * time.Second})
	if err := c.Ping(); err != nil {
		t.Fatalf("first Ping = %v", err)
	}
	if err := c.Ping(); err == nil || !strings.Contains(err.Error(), "lacks the prompt") {
		t.Fatalf("reply without a prompt: err = %v", err)
	}
}

func TestIOTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	addr := startServer(t, listen(t), afterHandshake(false, func(*bufio.Reader, net.Conn) {
		<-release
	}))
	c := dial(t, addr, Options{IOTimeout: 150 * time.Millisecond})
	start := time.Now()
	_, _, err := c.Get(1)
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Fatalf("Get from a silent server = %v, want a timeout", err)
	}
	if elapsed := time.Since(start); elapsed < 100*time.Millisecond || elapsed > 5*time.Second {
		t.Fatalf("timeout after %v, want about 150ms", elapsed)
	}
}

func TestTLS(t *testing.T) {
	serverConfig, clientConfig := selfSignedTLS(t)
	listener := tls.NewListener(listen(t), serverConfig)
	addr := startServer(t, listener, serveHaToKuSe(false))
	c := dial(t, addr, Options{TLSConfig: clientConfig, DialTimeout: 5 * time.Second})
	if err := c.Set(1, []byte("over tls")); err != nil {
		t.Fatalf("Set over TLS: %v", err)
	}
	if got, found, err := c.Get(1); err != nil || !found || string(got) != "over tls" {
		t.Fatalf("Get over TLS = %q, %v, %v", got, found, err)
	}
	// Without trusting the certificate the dial must fail.
	if c, err := Dial(context.Background(), addr, Options{TLSConfig: &tls.Config{MinVersion: tls.VersionTLS13}}); err == nil {
		_ = c.Close()
		t.Fatal("Dial trusted an unknown certificate")
	}
}

// selfSignedTLS makes a server configuration with a fresh self-signed
// certificate for 127.0.0.1 and a client configuration trusting it.
func selfSignedTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "tolerex test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	server = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}},
		MinVersion:   tls.VersionTLS13,
	}
	client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	return server, client
}

// serveOK answers every request line with "OK" and allocates nothing, so
// allocation counts taken beside it belong to the client.
func serveOK(conn net.Conn) {
	reader := bufio.NewReader(conn)
	writer := bufio.NewWriter(conn)
	if _, err := reader.ReadSlice('\n'); err != nil {
		return
	}
	if _, err := writer.WriteString(codec.ReplyPong + codec.LineEnd); err != nil {
		return
	}
	for {
		if err := flushIfIdle(reader, writer); err != nil {
			return
		}
		if _, err := reader.ReadSlice('\n'); err != nil {
			return
		}
		if _, err := writer.WriteString(codec.ReplyOK + codec.LineEnd); err != nil {
			return
		}
	}
}

func TestPipelinedHotPathDoesNotAllocate(t *testing.T) {
	c := dial(t, startServer(t, listen(t), serveOK), Options{IOTimeout: 10 * time.Second})
	line := []byte("SET 1 no allocations please")
	allocs := testing.AllocsPerRun(1000, func() {
		if err := c.Send(line); err != nil {
			t.Fatal(err)
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		if reply, err := c.ReadReply(); err != nil || string(reply) != codec.ReplyOK {
			t.Fatalf("reply %q, %v", reply, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Send+Flush+ReadReply allocated %.1f times per request, want 0", allocs)
	}
}

// BenchmarkPipelinedSet measures the hot path a load generator uses.
func BenchmarkPipelinedSet(b *testing.B) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer listener.Close()
	go func() {
		conn, err := listener.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		serveOK(conn)
	}()
	c, err := Dial(context.Background(), listener.Addr().String(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		for range b.N {
			if _, err := c.ReadReply(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	line := []byte("SET 1 benchmark-message")
	b.ReportAllocs()
	for i := range b.N {
		if err := c.Send(line); err != nil {
			b.Fatal(err)
		}
		if i%64 == 63 {
			if err := c.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := c.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
