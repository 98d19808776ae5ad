package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tolerex/tolerex/cluster/certs"
)

// newCA makes a cluster CA and node certificates of its own with
// `tolerex certs`, in a fresh dir named name, and returns the dir.
func newCA(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if _, code := RunChild(t, bin, ChildOptions{Args: []string{"certs", "--dir", dir}}, 30*time.Second); code != 0 {
		t.Fatalf("tolerex certs --dir %s failed", dir)
	}
	return dir
}

// joinWindow is how long a member that must not join is watched.
const joinWindow = 5 * time.Second

// rogueMember is a member process that must not be able to join.
type rogueMember struct {
	name      string
	child     *Child
	nodeAddr  string
	adminAddr string
	started   bool // its /healthz answered: it runs and tries to join
}

// startRogueMember starts a member joining c's gateway with the extra
// flags (--tls-dir DIR or --insecure; a later --join replaces the
// gateway's address).
func startRogueMember(t *testing.T, c *Cluster, name string, extra ...string) *rogueMember {
	t.Helper()
	r := &rogueMember{name: name, nodeAddr: FreeAddr(t), adminAddr: FreeAddr(t)}
	args := append([]string{"member", "--join", c.Gateway.NodeAddr, "--node-addr", r.nodeAddr,
		"--admin-addr", r.adminAddr, "--data-dir", filepath.Join(t.TempDir(), name), "--log-level", "debug"}, extra...)
	r.child = StartChild(t, bin, ChildOptions{Args: args})
	return r
}

// watchRogues checks, until deadline, that no rogue member becomes ready
// or appears in the gateway's /api/cluster, and that the gateway keeps
// exactly live members. Each rogue must have started (answered /healthz),
// so that the test shows it tried.
func watchRogues(t *testing.T, c *Cluster, live int, deadline time.Time, rogues ...*rogueMember) {
	t.Helper()
	for {
		st := c.Status(t)
		if st.LiveCount != live {
			t.Errorf("gateway sees %d live members, want %d: %+v", st.LiveCount, live, st.Members)
		}
		for _, r := range rogues {
			view := AdminView(r.name, r.adminAddr)
			if status, _ := probeAdmin(view, "/healthz"); status == 200 {
				r.started = true
			}
			if view.Ready() {
				t.Fatalf("%s became ready: it joined the cluster\n%s", r.name, r.child.Output())
			}
			for _, m := range st.Members {
				if m.NodeAddress == r.nodeAddr {
					t.Fatalf("gateway lists %s: %+v\n%s", r.name, m, r.child.Output())
				}
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, r := range rogues {
		if !r.started {
			t.Errorf("%s never answered /healthz, so it never tried to join\n%s", r.name, r.child.Output())
		}
	}
}

// checkReadWrite stores and reads back a few messages under ids from first.
func checkReadWrite(t *testing.T, c *Cluster, first int64) {
	t.Helper()
	cl := c.Dial(t)
	for id := first; id < first+20; id++ {
		if err := cl.Set(id, []byte(fmt.Sprintf("secure %d", id))); err != nil {
			t.Fatalf("SET %d: %v", id, err)
		}
	}
	for id := first; id < first+20; id++ {
		v, found, err := cl.Get(id)
		if err != nil || !found || string(v) != fmt.Sprintf("secure %d", id) {
			t.Fatalf("GET %d = %q found=%v err=%v", id, v, found, err)
		}
	}
	if found, err := cl.Del(first); err != nil || !found {
		t.Fatalf("DEL %d = %v %v", first, found, err)
	}
	if _, found, err := cl.Get(first); err != nil || found {
		t.Fatalf("GET %d after DEL: found=%v err=%v", first, found, err)
	}
}

// http2Preface starts every HTTP/2 (gRPC) connection.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// probeNodePort opens a TLS connection to a node's remote port with
// the cluster CA as root and optionally a client pair, sends the HTTP/2
// preface and reads the server's first bytes.
func probeNodePort(addr string, roots *x509.CertPool, pair *tls.Certificate) error {
	cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS13}
	if pair != nil {
		cfg.Certificates = []tls.Certificate{*pair}
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, http2Preface); err != nil {
		return err
	}
	// TLS 1.3 reports a refused client certificate on the first read.
	_, err = conn.Read(make([]byte, 64))
	return err
}

func TestTLS(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 2, Tolerance: 2})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	watchUntil := time.Now().Add(joinWindow)

	// A member with certificates from another CA.
	otherDir := newCA(t, "other-ca")
	otherCA := startRogueMember(t, c, "other-ca member", "--tls-dir", otherDir)
	// A plaintext member against the TLS gateway.
	plaintext := startRogueMember(t, c, "insecure member", "--insecure")
	// A member with the cluster's own certificates whose --join names a
	// member's node address: the TLS handshake succeeds both ways, but
	// the certificate there is a member's, and members take no heartbeat.
	misdirected := startRogueMember(t, c, "misdirected member", "--tls-dir", c.TLSDir, "--join", c.Members[0].NodeAddr)
	misdirectedTarget := c.Members[0]

	t.Run("smoke", func(t *testing.T) { checkReadWrite(t, c, 0) })

	t.Run("node port requires a cluster client certificate", func(t *testing.T) {
		caPEM, err := os.ReadFile(filepath.Join(c.TLSDir, certs.CACertFile))
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(caPEM) {
			t.Fatalf("no certificate in %s", certs.CACertFile)
		}
		pair, err := tls.LoadX509KeyPair(filepath.Join(c.TLSDir, certs.RoleMember.CertFile()), filepath.Join(c.TLSDir, certs.RoleMember.KeyFile()))
		if err != nil {
			t.Fatal(err)
		}
		if err := probeNodePort(c.Gateway.NodeAddr, roots, &pair); err != nil {
			t.Fatalf("TLS with the member pair to the gateway's node port: %v", err)
		}
		if err := probeNodePort(c.Gateway.NodeAddr, roots, nil); err == nil {
			t.Errorf("the gateway's node port accepted a TLS client without a certificate")
		}
		otherPair, err := tls.LoadX509KeyPair(filepath.Join(otherDir, certs.RoleMember.CertFile()), filepath.Join(otherDir, certs.RoleMember.KeyFile()))
		if err != nil {
			t.Fatal(err)
		}
		if err := probeNodePort(c.Gateway.NodeAddr, roots, &otherPair); err == nil {
			t.Errorf("the gateway's node port accepted a client certificate from another CA")
		}
	})

	t.Run("foreign members cannot join", func(t *testing.T) {
		watchRogues(t, c, len(c.Members), watchUntil, otherCA, plaintext, misdirected)
		// Each says why in /readyz, and its probes (connecting as its
		// remote layer would: the member of another CA makes the TLS
		// handshake, the plaintext member speaks plaintext HTTP/2, which
		// the TLS gateway drops, the misdirected member checks the role
		// of the certificate it was shown) kept protoactor from dialling
		// the gateway every 2 s.
		for _, r := range []struct {
			rogue *rogueMember
			says  []string
		}{
			{otherCA, []string{"unreachable: gateway " + c.Gateway.NodeAddr + ": tls: ", "certificate signed by unknown authority"}},
			{plaintext, []string{"unreachable: gateway " + c.Gateway.NodeAddr + ": ", "does it run with TLS?"}},
			{misdirected, []string{"unreachable: gateway " + misdirectedTarget.NodeAddr + ": ", "is a member (by its certificate), not a gateway"}},
		} {
			status, body := readyz(AdminView(r.rogue.name, r.rogue.adminAddr))
			if status != 503 || !strings.Contains(body, r.says[0]) || !strings.Contains(body, r.says[1]) {
				t.Errorf("/readyz of the %s: %d %q, want 503 saying %q", r.rogue.name, status, body, r.says)
			}
			if n := strings.Count(r.rogue.child.Output(), "EndpointWriter failed to connect"); n > 0 {
				t.Errorf("the %s handed the remote layer messages for a gateway it cannot reach (%d failed dials)", r.rogue.name, n)
			}
		}
		// The misdirected member never sent the member it names a
		// heartbeat (which that member's guard would refuse, a warning on
		// both sides several times a second).
		if n := strings.Count(misdirected.child.Output(), "EndpointWriter lost connection"); n > 0 {
			t.Errorf("the misdirected member handed its remote layer heartbeats for a member (%d lost connections)", n)
		}
		if n := strings.Count(misdirectedTarget.Log(), "peer sent a message it may not send"); n > 0 {
			t.Errorf("%s refused %d streams of the misdirected member", misdirectedTarget.Name, n)
		}
		// The cluster kept working beside them.
		checkReadWrite(t, c, 100)
		for _, m := range c.Members {
			if !m.Ready() {
				t.Errorf("%s is no longer ready", m.Name)
			}
		}
	})

	t.Run("a gateway whose initial cluster names a member", func(t *testing.T) {
		// A group of two where the second gateway's address is a
		// member's: the gateway's probe sees a member's certificate, so
		// its Raft transport never sends there and /readyz says why.
		nodeAddr, adminAddr := FreeAddr(t), FreeAddr(t)
		child := StartChild(t, bin, ChildOptions{Args: []string{"gateway", "--gateway-id", "1",
			"--initial-cluster", "1=" + nodeAddr + ",2=" + misdirectedTarget.NodeAddr,
			"--node-addr", nodeAddr, "--admin-addr", adminAddr, "--client-addr", FreeAddr(t),
			"--data-dir", filepath.Join(t.TempDir(), "misdirected-gateway"), "--tls-dir", c.TLSDir, "--no-prompt"}})
		t.Cleanup(func() { _ = child.Signal(os.Kill) })
		view := AdminView("misdirected gateway", adminAddr)
		want := "unreachable: gateway 2 at " + misdirectedTarget.NodeAddr + ": " + misdirectedTarget.NodeAddr + " is a member (by its certificate), not a gateway"
		Eventually(t, 10*time.Second, "the misdirected gateway to say why in /readyz", func() (bool, string) {
			status, body := readyz(view)
			return status == 503 && strings.Contains(body, want), fmt.Sprintf("%d %q", status, body)
		})
		// Raft asks gateway 2 for its vote at every election timeout;
		// after two such rounds nothing of them may have reached the
		// remote layer.
		Eventually(t, 15*time.Second, "the misdirected gateway to campaign twice", func() (bool, string) {
			n := strings.Count(child.Output(), "sent MsgPreVote request to 2")
			return n >= 2, fmt.Sprintf("%d pre-vote requests", n)
		})
		if n := strings.Count(child.Output(), "EndpointWriter"); n > 0 {
			t.Errorf("the misdirected gateway handed its remote layer Raft messages for a member (%d endpoint writer lines)", n)
		}
		if n := strings.Count(misdirectedTarget.Log(), "peer sent a message it may not send"); n > 0 {
			t.Errorf("%s refused %d streams", misdirectedTarget.Name, n)
		}
	})

	t.Run("gateway pair as member pair is refused", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "swapped")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for dst, src := range map[string]string{
			certs.CACertFile:             certs.CACertFile,
			certs.RoleMember.CertFile():  certs.RoleGateway.CertFile(),
			certs.RoleMember.KeyFile():   certs.RoleGateway.KeyFile(),
			certs.RoleGateway.CertFile(): certs.RoleGateway.CertFile(),
			certs.RoleGateway.KeyFile():  certs.RoleGateway.KeyFile(),
		} {
			data, err := os.ReadFile(filepath.Join(c.TLSDir, src))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, dst), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		r := startRogueMember(t, c, "swapped member", "--tls-dir", dir)
		code := r.child.Wait(t, 10*time.Second)
		requireCleanFailure(t, r.child, code, certs.RoleMember.CertFile(), "role gateway", "want member")
		for _, m := range c.Status(t).Members {
			if m.NodeAddress == r.nodeAddr {
				t.Errorf("gateway lists the refused member: %+v", m)
			}
		}
	})
}

func TestTLSInsecureCluster(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 2, Tolerance: 2, Insecure: true})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	watchUntil := time.Now().Add(joinWindow)

	// A TLS member cannot join a plaintext gateway either.
	tlsDir := newCA(t, "tls")
	tlsMember := startRogueMember(t, c, "tls member", "--tls-dir", tlsDir)

	t.Run("end to end", func(t *testing.T) {
		checkReadWrite(t, c, 0)
		st := c.Status(t)
		var indexed int64
		for _, m := range st.Members {
			indexed += m.Indexed
		}
		if st.Messages != 19 || indexed != 2*19 {
			t.Errorf("index holds %d messages in %d copies, want 19 in 38: %+v", st.Messages, indexed, st.Members)
		}
		if view := c.Tree(t); len(view.Nodes) != 1+len(c.Members) {
			t.Errorf("/api/tree has %d nodes, want %d", len(view.Nodes), 1+len(c.Members))
		}
		for _, p := range append([]*Process{c.Gateway}, c.Members...) {
			if !strings.Contains(p.Log(), "--insecure: node-to-node traffic is plaintext") {
				t.Errorf("%s does not warn that it runs --insecure", p.Name)
			}
		}
	})

	t.Run("tls member cannot join", func(t *testing.T) {
		watchRogues(t, c, len(c.Members), watchUntil, tlsMember)
		checkReadWrite(t, c, 100)
	})
}

// TestRaftGatewayOfAnotherCA starts a gateway whose certificates come from
// another cluster's CA, and then one run with --insecure, to join a
// running group: neither can reach any gateway of it, and each one's
// /readyz must say why (their certificates are not trusted; they do not
// answer plaintext HTTP/2), without its remote layer dialling them (its
// probes connect as the remote layer would first).
func TestRaftGatewayOfAnotherCA(t *testing.T) {
	c := raftGroup(t, 3, 2)
	// Two gateways start to join that cannot talk to the group: one with
	// certificates of another CA, one run with --insecure. Each probes
	// the group as its remote layer would connect, finds every gateway
	// unreachable, says why, and never hands its remote layer a message
	// for them.
	foreigners := []struct {
		name, tlsDir, why string
		extra             []string
	}{
		{"of another CA", newCA(t, "other-ca"), ": tls: failed to verify certificate: x509: certificate signed by unknown authority", nil},
		{"run with --insecure", "", ": closed the connection without an HTTP/2 answer (does it run with TLS? this node runs with --insecure)", []string{"--insecure"}},
	}
	for _, f := range foreigners {
		four, child := startJoiningGateway(t, c, f.tlsDir, append([]string{"--log-level", "debug"}, f.extra...)...)
		view := AdminView(four.Name, four.AdminAddr)
		Eventually(t, 10*time.Second, "the gateway "+f.name+" to say in /readyz why it cannot reach each gateway", func() (bool, string) {
			status, body := readyz(view)
			for _, g := range c.Gateways {
				if !strings.Contains(body, "at "+g.NodeAddr+f.why) {
					return false, fmt.Sprintf("%d %q", status, body)
				}
			}
			return status == 503 && strings.Contains(body, "no Raft leader known; unreachable: "), fmt.Sprintf("%d %q", status, body)
		})
		if n := strings.Count(child.Output(), "EndpointWriter failed to connect"); n > 0 {
			t.Errorf("the gateway %s handed its remote layer messages for gateways it cannot reach (%d failed dials)", f.name, n)
		}
		if n := strings.Count(child.Output(), `"message":"gateway unreachable"`); n != len(c.Gateways) {
			t.Errorf("the gateway %s logged %d lines \"gateway unreachable\", want one per gateway (%d)", f.name, n, len(c.Gateways))
		}
	}
	// The group goes on beside them.
	load := startWriteLoad(t, clientAddrs(c.Gateways), 1)
	load.waitOKs(t, 50)
	load.finish()
	load.verify(t, c.Gateways)
}
