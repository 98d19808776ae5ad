package certs

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// handshakeTimeout bounds every network step of a test handshake.
const handshakeTimeout = 10 * time.Second

// side is what one end of a test connection saw.
type side struct {
	peerRole Role
	err      error
}

// handshake runs one TLS connection over a real 127.0.0.1 listener with the
// given configurations and reports what each end saw. The server sends one
// byte after a successful handshake and the client must read it: with TLS 1.3
// the client finishes its handshake before the server has checked the client
// certificate, so a rejection reaches the client only on its first read.
// serverName, if set, replaces the name the client verifies (by default the
// dialled IP address 127.0.0.1).
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config, serverName string) (server, client side) {
	t.Helper()
	listener, err := tls.Listen("tcp", "127.0.0.1:0", serverCfg)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer listener.Close()

	serverDone := make(chan side, 1)
	go func() {
		serverDone <- serveOne(listener)
	}()

	clientCfg = clientCfg.Clone()
	if serverName != "" {
		clientCfg.ServerName = serverName
	}
	client = dialOne(listener.Addr().String(), clientCfg)

	select {
	case server = <-serverDone:
	case <-time.After(2 * handshakeTimeout):
		t.Fatal("server side of the handshake never finished")
	}
	return server, client
}

func serveOne(listener net.Listener) side {
	conn, err := listener.Accept()
	if err != nil {
		return side{err: err}
	}
	defer conn.Close()
	tlsConn := conn.(*tls.Conn)
	if err := tlsConn.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return side{err: err}
	}
	if err := tlsConn.Handshake(); err != nil {
		return side{err: err}
	}
	role, err := PeerRole(tlsConn.ConnectionState())
	if err != nil {
		return side{err: err}
	}
	if _, err := tlsConn.Write([]byte{'!'}); err != nil {
		return side{err: err}
	}
	return side{peerRole: role}
}

func dialOne(addr string, cfg *tls.Config) side {
	dialer := &net.Dialer{Timeout: handshakeTimeout}
	conn, err := tls.DialWithDialer(dialer, "tcp", addr, cfg)
	if err != nil {
		return side{err: err}
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return side{err: err}
	}
	buf := make([]byte, 1)
	if _, err := conn.Read(buf); err != nil {
		return side{err: err}
	}
	role, err := PeerRole(conn.ConnectionState())
	if err != nil {
		return side{err: err}
	}
	return side{peerRole: role}
}

func loadNode(t *testing.T, dir string, role Role) *NodeTLS {
	t.Helper()
	node, err := LoadNode(dir, role)
	if err != nil {
		t.Fatalf("LoadNode(%s, %s): %v", dir, role, err)
	}
	return node
}

// expectRejected fails unless both ends of a connection failed and the
// rejecting end's error contains want.
func expectRejected(t *testing.T, rejecting, other side, want string) {
	t.Helper()
	t.Logf("rejecting side: %v; rejected side: %v", rejecting.err, other.err)
	if rejecting.err == nil || !strings.Contains(rejecting.err.Error(), want) {
		t.Errorf("rejecting side: error %v, want one containing %q", rejecting.err, want)
	}
	if other.err == nil {
		t.Errorf("the rejected side completed the connection and saw role %q", other.peerRole)
	}
}

func TestHandshakeBetweenRoles(t *testing.T) {
	dir := generate(t, GenerateOptions{})
	gateway := loadNode(t, dir, RoleGateway)
	member := loadNode(t, dir, RoleMember)
	for _, tc := range []struct {
		name           string
		server, client *NodeTLS
	}{
		{"gateway serves member", gateway, member},
		{"member serves gateway", member, gateway},
		{"member serves member", member, member},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := handshake(t, tc.server.Server, tc.client.Client, "")
			if server.err != nil || client.err != nil {
				t.Fatalf("handshake failed: server %v, client %v", server.err, client.err)
			}
			if server.peerRole != tc.client.Role {
				t.Errorf("server sees peer role %q, want %q", server.peerRole, tc.client.Role)
			}
			if client.peerRole != tc.server.Role {
				t.Errorf("client sees peer role %q, want %q", client.peerRole, tc.server.Role)
			}
		})
	}
}

func TestHandshakeRejectsMemberOfAnotherCA(t *testing.T) {
	dir := generate(t, GenerateOptions{})
	other := generate(t, GenerateOptions{})
	gateway := loadNode(t, dir, RoleGateway)
	foreign := loadNode(t, other, RoleMember)

	// The foreign member trusts our CA, so only the server's check can stop it.
	trustingForeign := foreign.Client.Clone()
	trustingForeign.RootCAs = gateway.Client.RootCAs
	server, client := handshake(t, gateway.Server, trustingForeign, "")
	expectRejected(t, server, client, "certificate signed by unknown authority")

	// Used as is, the foreign member also refuses our gateway.
	server, client = handshake(t, gateway.Server, foreign.Client, "")
	expectRejected(t, client, server, "certificate signed by unknown authority")
}

func TestHandshakeRejectsClientWithoutCertificate(t *testing.T) {
	dir := generate(t, GenerateOptions{})
	gateway := loadNode(t, dir, RoleGateway)
	anonymous := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: gateway.Client.RootCAs}

	server, client := handshake(t, gateway.Server, anonymous, "")
	expectRejected(t, server, client, "client didn't provide a certificate")
}

func TestHandshakeRejectsCertificateWithoutRole(t *testing.T) {
	dir := generate(t, GenerateOptions{})
	gateway := loadNode(t, dir, RoleGateway)
	roleless := issueWithoutRole(t, dir)

	t.Run("client without role", func(t *testing.T) {
		cfg := gateway.Client.Clone()
		cfg.Certificates = []tls.Certificate{roleless}
		server, client := handshake(t, gateway.Server, cfg, "")
		expectRejected(t, server, client, "carries no tolerex role")
	})
	t.Run("server without role", func(t *testing.T) {
		cfg := gateway.Server.Clone()
		cfg.Certificates = []tls.Certificate{roleless}
		server, client := handshake(t, cfg, gateway.Client, "")
		expectRejected(t, client, server, "carries no tolerex role")
	})
}

func TestHandshakeVerifiesHostsSANs(t *testing.T) {
	dir := generate(t, GenerateOptions{Hosts: []string{"node1.tolerex.test", "10.9.8.7"}})
	gateway := loadNode(t, dir, RoleGateway)
	member := loadNode(t, dir, RoleMember)

	for _, name := range []string{"node1.tolerex.test", "localhost", "127.0.0.1"} {
		server, client := handshake(t, gateway.Server, member.Client, name)
		if server.err != nil || client.err != nil {
			t.Errorf("ServerName %q: server %v, client %v", name, server.err, client.err)
		}
		if client.peerRole != RoleGateway {
			t.Errorf("ServerName %q: client sees role %q", name, client.peerRole)
		}
	}

	server, client := handshake(t, gateway.Server, member.Client, "node2.tolerex.test")
	expectRejected(t, client, server, "node2.tolerex.test")
}

// issueWithoutRole signs, with the CA in dir, a certificate that is valid
// for 127.0.0.1 in both directions but carries no role URI.
func issueWithoutRole(t *testing.T, dir string) tls.Certificate {
	t.Helper()
	ca := readCert(t, filepath.Join(dir, "ca.crt"))
	caKey, err := x509.ParsePKCS8PrivateKey(readPEM(t, filepath.Join(dir, "ca.key"), keyBlockType))
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "member.crt"), filepath.Join(dir, "member.key"))
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "no role"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca, pair.Leaf.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	certPath := filepath.Join(t.TempDir(), "roleless.crt")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	roleless, err := tls.LoadX509KeyPair(certPath, filepath.Join(dir, "member.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RoleOf(roleless.Leaf); err == nil {
		t.Fatal("test certificate unexpectedly carries a role")
	}
	return roleless
}
