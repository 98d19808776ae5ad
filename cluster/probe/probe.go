// Package probe checks, off the actors and without protoactor, that a node
// address would take a connection from this node.
//
// protoactor starts a connection attempt for every send to an address it
// has no connection to, and after a failed attempt its endpoint writer
// sleeps 2 s, holding back (and then dropping) everything sent to that
// address meanwhile (ARCHITECTURE §9). So members and gateways hand a
// message to the remote layer only for a node a probe found reachable.
// With TLS the probe makes the same mutual-TLS handshake the remote layer
// would: a node whose certificate this one does not trust, or that does
// not trust this one's, is unreachable too, with the handshake's error as
// the reason, instead of being dialled (and logged) by protoactor every
// 2 s. So is a node of the cluster whose certificate names another role
// than the one the caller expects there (a member's address given where a
// gateway's belongs): the remote layer would connect, and the node's guard
// would close every stream it opened. A node run with --insecure likewise
// opens the plaintext HTTP/2 connection its remote layer would, so a node
// that speaks TLS is unreachable to it, with that as the reason; without
// certificates there is no role to check.
package probe

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/cluster/certs"
)

// Func probes one node address within timeout; nil means it takes
// connections from this node.
type Func func(address string, timeout time.Duration) error

// Refused reports a probe that found nothing listening at the address:
// the node is not running (its broken connection was reported already),
// unlike a failed handshake.
func Refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// FailureEvent starts the log line of a failed probe: at debug level when
// the connection was refused (see Refused), otherwise as a warning.
func FailureEvent(log *zerolog.Logger, err error) *zerolog.Event {
	if Refused(err) {
		return log.Debug()
	}
	return log.Warn()
}

// TLS returns a probe that connects, completes a TLS handshake with client
// (this node's client configuration: its certificate and the cluster CA)
// and checks that the node's certificate carries the role want. In TLS
// 1.3 the server checks the client's certificate after the client's side
// of the handshake is done, so the probe then waits for the server's
// first bytes (a gRPC server sends its HTTP/2 settings at once): a server
// that refused this node's certificate answers with an alert instead.
func TLS(client *tls.Config, want certs.Role) Func {
	return func(address string, timeout time.Duration) error {
		deadline := time.Now().Add(timeout)
		config := client.Clone()
		if config.ServerName == "" {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return fmt.Errorf("probe %s: %w", address, err)
			}
			config.ServerName = host
		}
		config.NextProtos = []string{"h2"}
		conn, err := tls.DialWithDialer(&net.Dialer{Deadline: deadline}, "tcp", address, config)
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close() }()
		role, err := certs.PeerRole(conn.ConnectionState())
		if err != nil {
			return fmt.Errorf("probe %s: %w", address, err)
		}
		if role != want {
			return fmt.Errorf("%s is a %s (by its certificate), not a %s", address, role, want)
		}
		if err := conn.SetReadDeadline(deadline); err != nil {
			return fmt.Errorf("probe %s: %w", address, err)
		}
		var first [1]byte
		if _, err := conn.Read(first[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			// A server that is up and took the certificate but sent
			// nothing before the deadline is reachable; anything else
			// (an alert, a reset, EOF) is not.
			return fmt.Errorf("after the TLS handshake: %w", err)
		}
		return nil
	}
}

// http2Preface is what an HTTP/2 client sends first (RFC 9113 §3.4): the
// connection preface and an empty SETTINGS frame.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")

// http2FrameSettings is the frame type of SETTINGS (RFC 9113 §6.5).
const http2FrameSettings = 0x4

// Plaintext probes a node as a node run with --insecure connects to it:
// plaintext HTTP/2, as gRPC without TLS. It sends the HTTP/2 connection
// preface and waits for the server's first frame, which a gRPC server
// sends at once: its SETTINGS. A node that speaks TLS closes the
// connection instead (Go's TLS server, on a first record that is no TLS
// handshake), and one that is paused answers nothing; both are
// unreachable.
func Plaintext(address string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	conn, err := net.DialTimeout("tcp", address, timeout)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	if err := conn.SetDeadline(deadline); err != nil {
		return fmt.Errorf("probe %s: %w", address, err)
	}
	if _, err := conn.Write(http2Preface); err != nil {
		return fmt.Errorf("plaintext HTTP/2 preface: %w", err)
	}
	var header [9]byte // an HTTP/2 frame header: length, type, flags, stream
	n, err := io.ReadFull(conn, header[:])
	switch {
	case err != nil && n == 0 && !errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("closed the connection without an HTTP/2 answer (does it run with TLS? this node runs with --insecure): %w", err)
	case err != nil:
		return fmt.Errorf("no HTTP/2 answer: %w", err)
	case header[3] != http2FrameSettings:
		return fmt.Errorf("answered plaintext HTTP/2 with %q, not a SETTINGS frame: not a node's remote layer", header[:])
	}
	return nil
}
