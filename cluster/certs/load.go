package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
)

// NodeTLS is the TLS configuration of one node: Server for its listener,
// Client for its outgoing connections. Both require TLS 1.3, a peer
// certificate chaining to the cluster CA, and a valid role in it.
type NodeTLS struct {
	// Server requires and verifies client certificates.
	Server *tls.Config
	// Client verifies the server against the cluster CA; its ServerName is
	// left for the dialer (gRPC sets it from the dial target).
	Client *tls.Config
	// Role is the role of this node's own certificate.
	Role Role
}

// LoadNode reads ca.crt and role's certificate and key from dir, checks that
// the certificate carries role, matches the key and chains to ca.crt, and
// returns the node's server and client TLS configurations.
func LoadNode(dir string, role Role) (*NodeTLS, error) {
	if !role.Valid() {
		return nil, fmt.Errorf("load node TLS from %s: unknown role %q", dir, role)
	}
	caPath := filepath.Join(dir, CACertFile)
	pool, err := LoadCAPool(caPath)
	if err != nil {
		return nil, err
	}
	certPath := filepath.Join(dir, role.CertFile())
	keyPath := filepath.Join(dir, role.KeyFile())
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("load key pair %s, %s: %w", certPath, keyPath, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse %s: %w", certPath, err)
		}
		pair.Leaf = leaf
	}
	got, err := RoleOf(leaf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	if got != role {
		return nil, fmt.Errorf("%s carries role %s, want %s", certPath, got, role)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}})
		if err != nil {
			return nil, fmt.Errorf("verify %s against %s: %w", certPath, caPath, err)
		}
	}

	server := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{pair},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        pool,
		VerifyConnection: requirePeerRole,
	}
	client := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{pair},
		RootCAs:          pool,
		VerifyConnection: requirePeerRole,
	}
	return &NodeTLS{Server: server, Client: client, Role: role}, nil
}

// requirePeerRole rejects a connection whose verified peer certificate
// carries no valid role: a certificate from the cluster CA without a role is
// not a node. It runs on full and resumed handshakes alike.
func requirePeerRole(state tls.ConnectionState) error {
	_, err := PeerRole(state)
	return err
}

// LoadCAPool reads a PEM file of one or more CA certificates into a pool, for
// verifying Tolerex node certificates.
func LoadCAPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA certificates: %w", err)
	}
	pool := x509.NewCertPool()
	count := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse CA certificate %d in %s: %w", count+1, path, err)
		}
		if !cert.IsCA {
			return nil, fmt.Errorf("certificate %q in %s is not a CA", cert.Subject.CommonName, path)
		}
		pool.AddCert(cert)
		count++
	}
	if count == 0 {
		return nil, fmt.Errorf("read CA certificates %s: no PEM CERTIFICATE block", path)
	}
	return pool, nil
}

// LoadServerTLS returns a TLS server configuration with role's certificate
// from dir that does not ask clients for certificates: for the HaToKuSe
// client port, whose clients verify the server against ca.crt.
func LoadServerTLS(dir string, role Role) (*tls.Config, error) {
	node, err := LoadNode(dir, role)
	if err != nil {
		return nil, err
	}
	cfg := node.Server.Clone()
	cfg.ClientAuth = tls.NoClientCert
	cfg.ClientCAs = nil
	cfg.VerifyConnection = nil
	return cfg, nil
}
