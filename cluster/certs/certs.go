// Package certs creates and loads the mutual-TLS material of a Tolerex
// cluster: one cluster CA and one certificate per node role, with the role
// carried in the certificate as a URI SAN (urn:tolerex:role:<role>).
//
// Generate writes a TLS directory; LoadNode turns it into server and client
// tls.Configs that require a peer certificate from the cluster CA carrying a
// valid role, and PeerRole tells which role a verified peer has. Only the
// standard library is used.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// Role is the part a node plays in the cluster. It is carried in the node's
// certificate and checked by its peers.
type Role string

// The node roles.
const (
	// RoleGateway is a node that serves clients and coordinates members.
	RoleGateway Role = "gateway"
	// RoleMember is a node that stores messages.
	RoleMember Role = "member"
)

// File names inside a TLS directory. Each role's pair is named after the role:
// see Role.CertFile and Role.KeyFile.
const (
	// CACertFile holds the cluster CA certificate (PEM).
	CACertFile = "ca.crt"
	// CAKeyFile holds the cluster CA private key (PEM, PKCS#8).
	CAKeyFile = "ca.key"
	// keyBlockType is the PEM block type of a PKCS#8 private key.
	keyBlockType = "PRIVATE KEY"
)

// roleURIPrefix starts the URI SAN that carries a node's role.
const roleURIPrefix = "urn:tolerex:role:"

// roles lists every known role, in the order their files are written.
func roles() []Role { return []Role{RoleGateway, RoleMember} }

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleGateway || r == RoleMember }

// CertFile is the name of the role's certificate file, e.g. "gateway.crt".
func (r Role) CertFile() string { return string(r) + ".crt" }

// KeyFile is the name of the role's private key file, e.g. "gateway.key".
func (r Role) KeyFile() string { return string(r) + ".key" }

// URI is the URI SAN that carries the role, e.g. "urn:tolerex:role:gateway".
func (r Role) URI() string { return roleURIPrefix + string(r) }

// ParseRole returns the role named s ("gateway" or "member").
func ParseRole(s string) (Role, error) {
	if r := Role(s); r.Valid() {
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q (want %q or %q)", s, RoleGateway, RoleMember)
}

// RoleOf returns the role carried by cert's urn:tolerex:role URI SAN. A
// certificate with no role URI, several role URIs or an unknown role is an
// error: it is not a node certificate.
func RoleOf(cert *x509.Certificate) (Role, error) {
	if cert == nil {
		return "", errors.New("no certificate")
	}
	var found []string
	for _, uri := range cert.URIs {
		if s := uri.String(); strings.HasPrefix(s, roleURIPrefix) {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("certificate %q carries no tolerex role", cert.Subject.CommonName)
	case 1:
	default:
		return "", fmt.Errorf("certificate %q carries %d tolerex roles (%s), want exactly one",
			cert.Subject.CommonName, len(found), strings.Join(found, ", "))
	}
	role, err := ParseRole(strings.TrimPrefix(found[0], roleURIPrefix))
	if err != nil {
		return "", fmt.Errorf("certificate %q: %w", cert.Subject.CommonName, err)
	}
	return role, nil
}

// PeerRole returns the role of the peer's verified certificate in a TLS
// connection state. It fails if the peer certificate was not verified (no
// verified chain) or carries no valid role.
func PeerRole(state tls.ConnectionState) (Role, error) {
	if len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return "", errors.New("peer role: no verified peer certificate")
	}
	role, err := RoleOf(state.VerifiedChains[0][0])
	if err != nil {
		return "", fmt.Errorf("peer role: %w", err)
	}
	return role, nil
}
