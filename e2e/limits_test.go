package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tolerex/tolerex/cluster/certs"
	"github.com/tolerex/tolerex/gateway/client"
)

// processGauge reads one unlabelled gauge (or counter) from a process's
// /metrics.
func processGauge(t *testing.T, p *Process, name string) float64 {
	t.Helper()
	families := MetricsOf(t, p)
	f, ok := families[name]
	if !ok || len(f.GetMetric()) == 0 {
		t.Fatalf("%s has no metric %s", p.Name, name)
	}
	m := f.GetMetric()[0]
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	}
	return m.GetUntyped().GetValue()
}

// TestClientLimits checks every bound on the HaToKuSe port against one
// gateway with small limits: the connection limit, the idle timeout, the
// line timeout (slow-loris), the write timeout, and that an endless line
// does not grow the server's memory.
func TestClientLimits(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 2, Tolerance: 2, NoPrompt: true, GatewayArgs: []string{
		"--max-connections", "4", "--idle-timeout", "1500ms", "--line-timeout", "1s", "--write-timeout", "1s",
		"--max-message-bytes", "4096",
	}})
	c.DumpLogsOnFailure(t)
	c.Start(t)

	t.Run("MaxConnections", func(t *testing.T) {
		var conns []*wireConn
		for i := 0; i < 4; i++ {
			w := dialWire(t, c.ClientAddr, false)
			w.do(exch("PING\r\n", "PONG"))
			conns = append(conns, w)
		}
		extra := dialWire(t, c.ClientAddr, false)
		extra.expect("ERROR: too many connections (max 4)\r\n")
		extra.expectEOF()
		for _, w := range conns {
			w.do(exch("PING\r\n", "PONG")) // the others are unaffected
		}
		conns[0].do(exch("QUIT\r\n", "Bye"))
		conns[0].expectEOF()
		Eventually(t, 5*time.Second, "a connection slot after one client quit", func() (bool, string) {
			w := dialWire(t, c.ClientAddr, false)
			w.send("PING\r\n")
			got, _ := readExactly(w.conn, len("PONG\r\n"))
			return string(got) == "PONG\r\n", fmt.Sprintf("a new connection got %q", got)
		})
		for _, w := range conns[1:] {
			w.conn.Close()
		}
		waitGauge(t, c.Gateway, "tolerex_client_connections", 0)
	})

	t.Run("IdleTimeout", func(t *testing.T) {
		active := dialWire(t, c.ClientAddr, false)
		idle := dialWire(t, c.ClientAddr, false)
		start := time.Now()
		for time.Since(start) < 2500*time.Millisecond {
			active.do(exch("PING\r\n", "PONG"))
			time.Sleep(300 * time.Millisecond)
		}
		idle.expect("ERROR: idle timeout (no request for 1.5s)\r\n")
		idle.expectEOF()
		active.do(exch("PING\r\n", "PONG"))
	})

	t.Run("SlowLoris", func(t *testing.T) {
		slow := dialWire(t, c.ClientAddr, false)
		other := dialWire(t, c.ClientAddr, false)
		slow.send("SET 7 ")
		start := time.Now()
		closed := false
		for i := 0; i < 20 && !closed; i++ {
			time.Sleep(250 * time.Millisecond)
			_ = slow.conn.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := slow.conn.Write([]byte("x")); err != nil {
				closed = true
			}
			other.do(exch("PING\r\n", "PONG"))
			_ = slow.conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			var b [128]byte
			if n, _ := slow.conn.Read(b[:]); n > 0 {
				if got := string(b[:n]); got != "ERROR: line timeout (a request line must arrive within 1s)\r\n" {
					t.Fatalf("slow client got %q", got)
				}
				closed = true
			}
		}
		if !closed {
			t.Fatalf("a client trickling one byte every 250ms kept its line open for %s", time.Since(start))
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("slow client cut after %s, want about 1s", took)
		}
		other.do(exch("GET 7\r\n", "NOT_FOUND")) // the partial SET never ran
	})

	t.Run("WriteTimeout", func(t *testing.T) {
		setup := dialWire(t, c.ClientAddr, false)
		big := strings.Repeat("b", 4000)
		setup.do(exch("SET 9 "+big+"\r\n", "OK"))
		// A client that pipelines GETs of a 4 KB value and never reads:
		// its socket buffers fill, the server's writes stall, and after
		// the write timeout the server gives up on it.
		stuck, err := dialRawTCP(c.ClientAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer stuck.Close()
		_ = stuck.SetReadBuffer(4096)
		go func() {
			req := []byte(strings.Repeat("GET 9\r\n", 1000))
			for i := 0; i < 200; i++ {
				_ = stuck.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := stuck.Write(req); err != nil {
					return
				}
			}
		}()
		setup.conn.Close()
		waitGauge(t, c.Gateway, "tolerex_client_connections", 0) // the stuck client was dropped
		fresh := dialWire(t, c.ClientAddr, false)
		fresh.do(exch("PING\r\n", "PONG"))
	})

	t.Run("EndlessLineMemory", func(t *testing.T) {
		before := processGauge(t, c.Gateway, "process_resident_memory_bytes")
		w := dialWire(t, c.ClientAddr, false)
		chunk := []byte(strings.Repeat("a", 64<<10))
		sent := 0
		deadline := time.Now().Add(400 * time.Millisecond) // well inside the 1s line timeout
		for time.Now().Before(deadline) && sent < 256<<20 {
			_ = w.conn.SetWriteDeadline(time.Now().Add(time.Second))
			n, err := w.conn.Write(chunk)
			sent += n
			if err != nil {
				break
			}
		}
		w.send("\r\n")
		w.expect("ERROR: line too long (max 4160 bytes)\r\n")
		after := processGauge(t, c.Gateway, "process_resident_memory_bytes")
		t.Logf("sent %d MiB of one line; gateway RSS %.1f -> %.1f MiB", sent>>20, before/(1<<20), after/(1<<20))
		if sent < 8<<20 {
			t.Fatalf("only %d bytes sent; the test needs a long line", sent)
		}
		if after-before > 32<<20 {
			t.Fatalf("gateway RSS grew by %.1f MiB while reading one endless line", (after-before)/(1<<20))
		}
		w.do(exch("PING\r\n", "PONG"))
	})
}

// waitGauge waits until a gauge on p reaches want.
func waitGauge(t *testing.T, p *Process, name string, want float64) {
	t.Helper()
	Eventually(t, 10*time.Second, fmt.Sprintf("%s on %s to be %v", name, p.Name, want), func() (bool, string) {
		got := processGauge(t, p, name)
		return got == want, fmt.Sprintf("%v", got)
	})
}

// TestClientTLS serves HaToKuSe over TLS with --client-tls-dir: the Go
// client and `tolerex client --tls-ca` connect; plaintext does not work.
func TestClientTLS(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 2, Tolerance: 2})
	c.Gateway.Args = append(c.Gateway.Args, "--client-tls-dir", c.TLSDir)
	c.DumpLogsOnFailure(t)
	c.Start(t)

	pool, err := certs.LoadCAPool(filepath.Join(c.TLSDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, c.ClientAddr, client.Options{TLSConfig: &tls.Config{RootCAs: pool}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	defer cl.Close()
	if err := cl.Set(1, []byte("over tls")); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "client", "--addr", c.ClientAddr, "--tls-ca", filepath.Join(c.TLSDir, "ca.crt"))
	cmd.Stdin = strings.NewReader("GET 1\nQUIT\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "over tls") {
		t.Fatalf("tolerex client --tls-ca: %v\n%s", err, out)
	}

	// Plaintext HaToKuSe on the TLS port gets no HaToKuSe reply.
	plain, err := net.DialTimeout("tcp", c.ClientAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	fmt.Fprint(plain, "PING\r\n")
	_ = plain.SetReadDeadline(time.Now().Add(3 * time.Second))
	var b [64]byte
	n, _ := plain.Read(b[:])
	if strings.Contains(string(b[:n]), "PONG") {
		t.Fatalf("plaintext client got %q from the TLS port", b[:n])
	}
	// A client that does not trust the CA is refused.
	if _, err := client.Dial(ctx, c.ClientAddr, client.Options{TLSConfig: &tls.Config{}, DialTimeout: 5 * time.Second}); err == nil {
		t.Fatal("a client without the cluster CA connected")
	}
}
