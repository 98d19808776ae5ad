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
// 2 s.
package probe

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// Func probes one node address within timeout; nil means it takes
// connections from this node.
type Func func(address string, timeout time.Duration) error

// Refused reports a probe that found nothing listening at the address:
// the node is not running, which callers log only at debug level (its
// broken connection was reported already), unlike a failed handshake.
func Refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// TCP probes with a plain TCP connection (nodes run with --insecure, and
// tests).
func TCP(address string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", address, timeout)
	if err != nil {
		return err
	}
	return conn.Close()
}

// TLS returns a probe that connects and completes a TLS handshake with
// client (this node's client configuration: its certificate and the
// cluster CA). In TLS 1.3 the server checks the client's certificate after
// the client's side of the handshake is done, so the probe then waits for
// the server's first bytes (a gRPC server sends its HTTP/2 settings at
// once): a server that refused this node's certificate answers with an
// alert instead.
func TLS(client *tls.Config) Func {
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
