package certs

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadNodeBothRoles(t *testing.T) {
	dir := generate(t, GenerateOptions{})
	for _, role := range []Role{RoleGateway, RoleMember} {
		node, err := LoadNode(dir, role)
		if err != nil {
			t.Fatalf("LoadNode(%s): %v", role, err)
		}
		if node.Role != role {
			t.Errorf("LoadNode(%s).Role = %q", role, node.Role)
		}
		for name, cfg := range map[string]*tls.Config{"server": node.Server, "client": node.Client} {
			if cfg.MinVersion != tls.VersionTLS13 {
				t.Errorf("%s %s MinVersion %x, want TLS 1.3", role, name, cfg.MinVersion)
			}
			if len(cfg.Certificates) != 1 {
				t.Fatalf("%s %s has %d certificates", role, name, len(cfg.Certificates))
			}
			leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			if got, err := RoleOf(leaf); err != nil || got != role {
				t.Errorf("%s %s presents a certificate of role %q (%v)", role, name, got, err)
			}
			if cfg.VerifyConnection == nil {
				t.Errorf("%s %s does not check the peer's role", role, name)
			}
		}
		if node.Server.ClientAuth != tls.RequireAndVerifyClientCert || node.Server.ClientCAs == nil {
			t.Errorf("%s server does not require verified client certificates", role)
		}
		if node.Client.RootCAs == nil || node.Client.InsecureSkipVerify {
			t.Errorf("%s client does not verify the server against the CA", role)
		}
	}
}

func TestLoadNodeDetectsWrongRole(t *testing.T) {
	dir := generate(t, GenerateOptions{})
	copyFile(t, filepath.Join(dir, "member.crt"), filepath.Join(dir, "gateway.crt"))
	copyFile(t, filepath.Join(dir, "member.key"), filepath.Join(dir, "gateway.key"))

	_, err := LoadNode(dir, RoleGateway)
	if err == nil {
		t.Fatal("LoadNode(gateway) accepted a member pair")
	}
	want := filepath.Join(dir, "gateway.crt") + " carries role member, want gateway"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want it to contain %q", err, want)
	}
	if _, err := LoadNode(dir, RoleMember); err != nil {
		t.Errorf("LoadNode(member) with an intact member pair: %v", err)
	}
}

func TestLoadNodeDetectsForeignCA(t *testing.T) {
	dir := generate(t, GenerateOptions{})
	other := generate(t, GenerateOptions{})
	copyFile(t, filepath.Join(other, "member.crt"), filepath.Join(dir, "member.crt"))
	copyFile(t, filepath.Join(other, "member.key"), filepath.Join(dir, "member.key"))

	_, err := LoadNode(dir, RoleMember)
	if err == nil {
		t.Fatal("LoadNode accepted a pair signed by another CA")
	}
	if !strings.Contains(err.Error(), "member.crt") || !strings.Contains(err.Error(), "ca.crt") {
		t.Errorf("error %q does not name member.crt and ca.crt", err)
	}
}

func TestLoadNodeDetectsMismatchedKey(t *testing.T) {
	dir := generate(t, GenerateOptions{})
	copyFile(t, filepath.Join(dir, "member.key"), filepath.Join(dir, "gateway.key"))
	_, err := LoadNode(dir, RoleGateway)
	if err == nil {
		t.Fatal("LoadNode accepted gateway.crt with member.key")
	}
	if !strings.Contains(err.Error(), "gateway.key") {
		t.Errorf("error %q does not name gateway.key", err)
	}
}

func TestLoadNodeRejectsExpiredCertificate(t *testing.T) {
	dir := generate(t, GenerateOptions{Now: time.Now().AddDate(-3, 0, 0)})
	_, err := LoadNode(dir, RoleGateway)
	if err == nil {
		t.Fatal("LoadNode accepted a certificate that expired a year ago")
	}
	if !strings.Contains(err.Error(), "expired") {
		t.Errorf("error %q does not say the certificate expired", err)
	}
}

func TestLoadNodeMissingFiles(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadNode(dir, RoleGateway)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "ca.crt")) {
		t.Errorf("LoadNode on an empty directory: %v, want an error naming ca.crt", err)
	}

	full := generate(t, GenerateOptions{})
	if err := os.Remove(filepath.Join(full, "member.key")); err != nil {
		t.Fatal(err)
	}
	_, err = LoadNode(full, RoleMember)
	if err == nil || !strings.Contains(err.Error(), "member.key") {
		t.Errorf("LoadNode without member.key: %v, want an error naming member.key", err)
	}
}

func TestLoadNodeUnknownRole(t *testing.T) {
	dir := generate(t, GenerateOptions{})
	if _, err := LoadNode(dir, Role("admin")); err == nil {
		t.Error("LoadNode accepted role admin")
	}
}

func TestLoadCAPool(t *testing.T) {
	dir := generate(t, GenerateOptions{})
	pool, err := LoadCAPool(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatalf("LoadCAPool: %v", err)
	}
	leaf := readCert(t, filepath.Join(dir, "gateway.crt"))
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Errorf("gateway.crt does not verify against the loaded pool: %v", err)
	}
	other := generate(t, GenerateOptions{})
	foreign := readCert(t, filepath.Join(other, "gateway.crt"))
	if _, err := foreign.Verify(x509.VerifyOptions{Roots: pool}); err == nil {
		t.Error("a certificate of another CA verifies against the pool")
	}

	if _, err := LoadCAPool(filepath.Join(dir, "gateway.crt")); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("LoadCAPool(gateway.crt) = %v, want a not-a-CA error", err)
	}
	if _, err := LoadCAPool(filepath.Join(dir, "ca.key")); err == nil || !strings.Contains(err.Error(), "ca.key") {
		t.Errorf("LoadCAPool(ca.key) = %v, want an error naming the file", err)
	}
	if _, err := LoadCAPool(filepath.Join(dir, "missing.crt")); err == nil {
		t.Error("LoadCAPool of a missing file succeeded")
	}
}

func TestRoleOf(t *testing.T) {
	uris := func(raw ...string) []*url.URL {
		var list []*url.URL
		for _, s := range raw {
			u, err := url.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			list = append(list, u)
		}
		return list
	}
	for _, tc := range []struct {
		name    string
		uris    []*url.URL
		want    Role
		wantErr string
	}{
		{name: "gateway", uris: uris("urn:tolerex:role:gateway"), want: RoleGateway},
		{name: "member", uris: uris("urn:tolerex:role:member"), want: RoleMember},
		{name: "other URIs ignored", uris: uris("spiffe://example/x", "urn:tolerex:role:member"), want: RoleMember},
		{name: "none", wantErr: "no tolerex role"},
		{name: "unrelated URI only", uris: uris("https://example.com/"), wantErr: "no tolerex role"},
		{name: "two roles", uris: uris("urn:tolerex:role:gateway", "urn:tolerex:role:member"), wantErr: "2 tolerex roles"},
		{name: "same role twice", uris: uris("urn:tolerex:role:member", "urn:tolerex:role:member"), wantErr: "2 tolerex roles"},
		{name: "unknown role", uris: uris("urn:tolerex:role:admin"), wantErr: `unknown role "admin"`},
		{name: "empty role", uris: uris("urn:tolerex:role:"), wantErr: "unknown role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := &x509.Certificate{Subject: pkix.Name{CommonName: "test"}, URIs: tc.uris}
			got, err := RoleOf(cert)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("RoleOf = %q, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("RoleOf = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := RoleOf(nil); err == nil {
		t.Error("RoleOf(nil) succeeded")
	}
}

func TestPeerRoleNeedsVerifiedChain(t *testing.T) {
	dir := generate(t, GenerateOptions{})
	leaf := readCert(t, filepath.Join(dir, "member.crt"))
	// An unverified peer certificate is not trusted, even with a role in it.
	if _, err := PeerRole(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}); err == nil {
		t.Error("PeerRole trusted an unverified certificate")
	}
	ca := readCert(t, filepath.Join(dir, "ca.crt"))
	got, err := PeerRole(tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf, ca}}})
	if err != nil || got != RoleMember {
		t.Errorf("PeerRole = %q, %v; want member", got, err)
	}
}

func TestParseRole(t *testing.T) {
	for _, s := range []string{"gateway", "member"} {
		if r, err := ParseRole(s); err != nil || string(r) != s {
			t.Errorf("ParseRole(%q) = %q, %v", s, r, err)
		}
	}
	for _, s := range []string{"", "Gateway", "admin"} {
		if _, err := ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) succeeded", s)
		}
	}
}
