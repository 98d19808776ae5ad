package probe

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tolerex/tolerex/cluster/certs"
)

const testTimeout = 2 * time.Second

// cluster generates a cluster CA and its certificate pairs in a fresh dir
// and returns the gateway's.
func cluster(t *testing.T) *certs.NodeTLS {
	t.Helper()
	gateway, _ := clusterPairs(t)
	return gateway
}

// clusterPairs generates a cluster CA and its certificate pairs in a fresh
// dir and returns the gateway's and the member's.
func clusterPairs(t *testing.T) (gateway, member *certs.NodeTLS) {
	t.Helper()
	dir := t.TempDir()
	if _, err := certs.Generate(dir, certs.GenerateOptions{}); err != nil {
		t.Fatalf("generate certificates: %v", err)
	}
	gateway, err := certs.LoadNode(dir, certs.RoleGateway)
	if err != nil {
		t.Fatalf("load the gateway's certificates: %v", err)
	}
	member, err = certs.LoadNode(dir, certs.RoleMember)
	if err != nil {
		t.Fatalf("load the member's certificates: %v", err)
	}
	return gateway, member
}

// serveGRPC runs a real gRPC server with server's TLS configuration on
// 127.0.0.1, as a node's remote layer does, and returns its address.
func serveGRPC(t *testing.T, server *tls.Config) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(server)))
	go func() { _ = s.Serve(listener) }()
	t.Cleanup(s.Stop)
	return listener.Addr().String()
}

// closedAddress is a 127.0.0.1 address nothing listens on.
func closedAddress(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	address := listener.Addr().String()
	_ = listener.Close()
	return address
}

func TestTLSProbeMakesTheNodesHandshake(t *testing.T) {
	ours, ourMember := clusterPairs(t)
	theirs := cluster(t)
	probe := TLS(ours.Client, certs.RoleGateway)

	if err := probe(serveGRPC(t, ours.Server), testTimeout); err != nil {
		t.Errorf("a gateway of the same cluster: %v, want reachable", err)
	}

	// A member of the same cluster where a gateway was expected: the
	// handshake succeeds both ways, the role is wrong.
	err := probe(serveGRPC(t, ourMember.Server), testTimeout)
	if err == nil || !strings.Contains(err.Error(), "is a member (by its certificate), not a gateway") || Refused(err) {
		t.Errorf("a member where a gateway belongs: %v, want its role refused", err)
	}
	if err := TLS(ours.Client, certs.RoleMember)(serveGRPC(t, ourMember.Server), testTimeout); err != nil {
		t.Errorf("a member probed as a member: %v, want reachable", err)
	}

	// A node whose certificate comes from another CA.
	err = probe(serveGRPC(t, theirs.Server), testTimeout)
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") || Refused(err) {
		t.Errorf("a node of another cluster: %v, want its certificate refused (not the connection)", err)
	}

	// A node that presents a certificate this one trusts but trusts only
	// the other CA: it refuses this node's certificate after the
	// client's side of the handshake is done, which only the read sees.
	strict := ours.Server.Clone()
	strict.ClientCAs = theirs.Server.ClientCAs
	err = probe(serveGRPC(t, strict), testTimeout)
	if err == nil || !strings.Contains(err.Error(), "after the TLS handshake") {
		t.Errorf("a node that refuses this node's certificate: %v, want refused after the handshake", err)
	}

	// A node run with --insecure.
	err = probe(servePlaintextGRPC(t), testTimeout)
	if err == nil || !strings.Contains(err.Error(), "does not look like a TLS handshake") {
		t.Errorf("a node run with --insecure: %v, want its plaintext answer refused", err)
	}

	started := time.Now()
	if err := probe(closedAddress(t), testTimeout); err == nil {
		t.Error("an address nothing listens on: reachable")
	}
	if took := time.Since(started); took > testTimeout/2 {
		t.Errorf("a refused connection took %v to report", took)
	}
}

// servePlaintextGRPC runs a real gRPC server without TLS on 127.0.0.1, as
// the remote layer of a node run with --insecure, and returns its address.
func servePlaintextGRPC(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := grpc.NewServer()
	go func() { _ = s.Serve(listener) }()
	t.Cleanup(s.Stop)
	return listener.Addr().String()
}

func TestPlaintextProbeSpeaksHTTP2(t *testing.T) {
	if err := Plaintext(servePlaintextGRPC(t), testTimeout); err != nil {
		t.Errorf("a node run with --insecure: %v, want reachable", err)
	}

	err := Plaintext(serveGRPC(t, cluster(t).Server), testTimeout)
	if err == nil || !strings.Contains(err.Error(), "TLS") || Refused(err) {
		t.Errorf("a node that runs with TLS: %v, want refused as speaking TLS", err)
	}

	// A listener that takes the connection but never answers, as a paused
	// node's kernel does.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer silent.Close()
	started := time.Now()
	err = Plaintext(silent.Addr().String(), 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no HTTP/2 answer") {
		t.Errorf("a listener that never answers: %v, want no answer", err)
	}
	if took := time.Since(started); took > testTimeout/2 {
		t.Errorf("a silent listener took %v to report (timeout 200ms)", took)
	}

	// Something that answers, but not as HTTP/2.
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer other.Close()
	go func() {
		conn, err := other.Accept()
		if err == nil {
			_, _ = conn.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			_ = conn.Close()
		}
	}()
	err = Plaintext(other.Addr().String(), testTimeout)
	if err == nil || !strings.Contains(err.Error(), "not a SETTINGS frame") {
		t.Errorf("an HTTP/1 server: %v, want not a node", err)
	}

	err = Plaintext(closedAddress(t), testTimeout)
	if err == nil || !Refused(err) {
		t.Errorf("an address nothing listens on: %v, want refused", err)
	}
}

func TestFailureEventLogsRefusedAtDebugOnly(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := closed.Addr().String()
	closed.Close()
	refused := Plaintext(addr, testTimeout)
	if !Refused(refused) {
		t.Fatalf("probe of a closed port: %v, want refused", refused)
	}
	speaksTLS := Plaintext(serveGRPC(t, cluster(t).Server), testTimeout)

	var out strings.Builder
	log := zerolog.New(&out).Level(zerolog.InfoLevel)
	FailureEvent(&log, refused).Msg("refused")
	FailureEvent(&log, speaksTLS).Msg("handshake")
	if got := out.String(); strings.Contains(got, `"refused"`) || !strings.Contains(got, `"level":"warn","message":"handshake"`) {
		t.Errorf("logged at info level:\n%s\nwant only the failed handshake, as a warning", got)
	}
}
