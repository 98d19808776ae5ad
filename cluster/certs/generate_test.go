package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// allFiles is every file of a TLS directory, in the order Generate writes them.
var allFiles = []string{"ca.crt", "ca.key", "gateway.crt", "gateway.key", "member.crt", "member.key"}

// generate runs Generate into a fresh directory and returns it.
func generate(t *testing.T, opts GenerateOptions) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := Generate(dir, opts); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return dir
}

// readPEM returns the single PEM block of path, checking its type.
func readPEM(t *testing.T, path, blockType string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	if block.Type != blockType {
		t.Fatalf("%s: PEM type %q, want %q", path, block.Type, blockType)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: trailing data after the PEM block", path)
	}
	return block.Bytes
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	cert, err := x509.ParseCertificate(readPEM(t, path, "CERTIFICATE"))
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return cert
}

// snapshot returns the contents of every file of a TLS directory.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	contents := make(map[string][]byte)
	for _, name := range allFiles {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		contents[name] = data
	}
	return contents
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestGenerateWritesFilesWithModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "tls")
	paths, err := Generate(dir, GenerateOptions{})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	var want []string
	for _, name := range allFiles {
		want = append(want, filepath.Join(dir, name))
	}
	if !slices.Equal(paths, want) {
		t.Fatalf("Generate returned %q, want %q", paths, want)
	}

	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o700 {
		t.Errorf("directory mode %o, want 700", mode)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	sorted := slices.Sorted(slices.Values(allFiles))
	if !slices.Equal(names, sorted) {
		t.Errorf("directory holds %q, want exactly %q (no temporary files)", names, sorted)
	}

	for _, name := range allFiles {
		path := filepath.Join(dir, name)
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		wantMode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") {
			wantMode = 0o600
			key, err := x509.ParsePKCS8PrivateKey(readPEM(t, path, keyBlockType))
			if err != nil {
				t.Fatalf("parse %s: %v", path, err)
			}
			ecKey, ok := key.(*ecdsa.PrivateKey)
			if !ok || ecKey.Curve != elliptic.P256() {
				t.Errorf("%s: key %T, want ECDSA P-256", name, key)
			}
		} else {
			readCert(t, path)
		}
		if mode := info.Mode().Perm(); mode != wantMode {
			t.Errorf("%s mode %o, want %o", name, mode, wantMode)
		}
	}
}

func TestGenerateCertificateContents(t *testing.T) {
	now := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	dir := generate(t, GenerateOptions{Now: now})

	ca := readCert(t, filepath.Join(dir, "ca.crt"))
	if !ca.IsCA || !ca.BasicConstraintsValid {
		t.Errorf("CA: IsCA=%v BasicConstraintsValid=%v", ca.IsCA, ca.BasicConstraintsValid)
	}
	if ca.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("CA key usage %b", ca.KeyUsage)
	}
	if ca.Subject.CommonName != "Tolerex cluster CA" {
		t.Errorf("CA CN %q", ca.Subject.CommonName)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if ca.SerialNumber.Sign() <= 0 || ca.SerialNumber.BitLen() > 128 {
		t.Errorf("CA serial %v not a positive 128-bit number", ca.SerialNumber)
	}
	if !ca.NotBefore.Equal(now.Add(-time.Hour)) || !ca.NotAfter.Equal(now.AddDate(10, 0, 0)) {
		t.Errorf("CA valid from %v to %v, want an hour before %v to ten years after", ca.NotBefore, ca.NotAfter, now)
	}
	if ca.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("CA key algorithm %v", ca.PublicKeyAlgorithm)
	}

	for _, role := range []Role{RoleGateway, RoleMember} {
		leaf := readCert(t, filepath.Join(dir, role.CertFile()))
		if err := leaf.CheckSignatureFrom(ca); err != nil {
			t.Errorf("%s not signed by the CA: %v", role, err)
		}
		if leaf.IsCA {
			t.Errorf("%s is a CA", role)
		}
		if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
			t.Errorf("%s ext key usage %v, want server and client auth", role, leaf.ExtKeyUsage)
		}
		if !leaf.NotBefore.Equal(now.Add(-time.Hour)) {
			t.Errorf("%s NotBefore %v, want %v", role, leaf.NotBefore, now.Add(-time.Hour))
		}
		if !leaf.NotAfter.Equal(now.AddDate(2, 0, 0)) {
			t.Errorf("%s NotAfter %v, want two years after %v", role, leaf.NotAfter, now)
		}
		if leaf.Subject.CommonName != "tolerex "+string(role) || !slices.Equal(leaf.Subject.OrganizationalUnit, []string{string(role)}) {
			t.Errorf("%s subject %v", role, leaf.Subject)
		}
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "urn:tolerex:role:"+string(role) {
			t.Errorf("%s URIs %v", role, leaf.URIs)
		}
		if got, err := RoleOf(leaf); err != nil || got != role {
			t.Errorf("RoleOf(%s) = %q, %v", role, got, err)
		}
		if !slices.Equal(leaf.DNSNames, []string{"localhost"}) {
			t.Errorf("%s DNS names %q", role, leaf.DNSNames)
		}
		if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
			t.Errorf("%s IP addresses %v", role, leaf.IPAddresses)
		}
		if leaf.SerialNumber.Cmp(ca.SerialNumber) == 0 {
			t.Errorf("%s shares the CA's serial", role)
		}
	}
}

func TestGenerateRefusesToOverwrite(t *testing.T) {
	dir := generate(t, GenerateOptions{})
	before := snapshot(t, dir)

	_, err := Generate(dir, GenerateOptions{})
	if err == nil {
		t.Fatal("second Generate without Force succeeded")
	}
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("error %q does not wrap fs.ErrExist", err)
	}
	for _, name := range allFiles {
		if !strings.Contains(err.Error(), filepath.Join(dir, name)) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	after := snapshot(t, dir)
	for _, name := range allFiles {
		if !bytes.Equal(before[name], after[name]) {
			t.Errorf("%s changed although Generate refused", name)
		}
	}
}

func TestGenerateRefusesIfAnyFileExists(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "member.key")
	if err := os.WriteFile(existing, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Generate(dir, GenerateOptions{})
	if err == nil {
		t.Fatal("Generate overwrote an existing member.key")
	}
	if !strings.Contains(err.Error(), existing) || strings.Contains(err.Error(), "ca.crt") {
		t.Errorf("error %q should name member.key and only it", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("Generate wrote files although it refused: %v", entries)
	}
	if data, _ := os.ReadFile(existing); string(data) != "precious" {
		t.Errorf("member.key changed to %q", data)
	}
}

func TestGenerateForceOverwrites(t *testing.T) {
	dir := generate(t, GenerateOptions{})
	before := snapshot(t, dir)
	// A loosened mode must be tightened again by the rewrite.
	if err := os.Chmod(filepath.Join(dir, "gateway.key"), 0o644); err != nil {
		t.Fatal(err)
	}

	paths, err := Generate(dir, GenerateOptions{Force: true})
	if err != nil {
		t.Fatalf("Generate with Force: %v", err)
	}
	if len(paths) != len(allFiles) {
		t.Errorf("Generate with Force wrote %d files, want %d", len(paths), len(allFiles))
	}
	after := snapshot(t, dir)
	for _, name := range allFiles {
		if bytes.Equal(before[name], after[name]) {
			t.Errorf("%s not rewritten", name)
		}
	}
	info, err := os.Stat(filepath.Join(dir, "gateway.key"))
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("rewritten gateway.key mode %o, want 600", mode)
	}
	for _, role := range []Role{RoleGateway, RoleMember} {
		if _, err := LoadNode(dir, role); err != nil {
			t.Errorf("LoadNode(%s) after Force: %v", role, err)
		}
	}
}

func TestGenerateHostsBecomeSANs(t *testing.T) {
	hosts := []string{"Node1.Tolerex.test", " 10.1.2.3 ", "fd00::7", "*.members.tolerex.test", "127.0.0.1", "localhost"}
	dir := generate(t, GenerateOptions{Hosts: hosts})
	for _, role := range []Role{RoleGateway, RoleMember} {
		leaf := readCert(t, filepath.Join(dir, role.CertFile()))
		wantDNS := []string{"localhost", "node1.tolerex.test", "*.members.tolerex.test"}
		if !slices.Equal(leaf.DNSNames, wantDNS) {
			t.Errorf("%s DNS names %q, want %q", role, leaf.DNSNames, wantDNS)
		}
		wantIPs := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 1, 2, 3), net.ParseIP("fd00::7")}
		if len(leaf.IPAddresses) != len(wantIPs) {
			t.Fatalf("%s IP addresses %v, want %v", role, leaf.IPAddresses, wantIPs)
		}
		for i, ip := range wantIPs {
			if !leaf.IPAddresses[i].Equal(ip) {
				t.Errorf("%s IP address %d is %v, want %v", role, i, leaf.IPAddresses[i], ip)
			}
		}
		for _, name := range []string{"node1.tolerex.test", "a.members.tolerex.test", "10.1.2.3", "fd00::7", "localhost"} {
			if err := leaf.VerifyHostname(name); err != nil {
				t.Errorf("%s does not verify for %s: %v", role, name, err)
			}
		}
		if err := leaf.VerifyHostname("node2.tolerex.test"); err == nil {
			t.Errorf("%s verifies for a host it was not issued for", role)
		}
	}
}

func TestGenerateRejectsBadHosts(t *testing.T) {
	for _, host := range []string{
		"",
		"   ",
		"two words",
		"http://node1",
		"node1:8080",
		"-node.example",
		"node-.example",
		"a..b",
		".example",
		"node_1.example",
		"fe80::1%eth0",
		strings.Repeat("a", 64) + ".example",
		strings.Repeat("abcdefghi.", 26) + "example",
	} {
		dir := filepath.Join(t.TempDir(), "tls")
		_, err := Generate(dir, GenerateOptions{Hosts: []string{"good.example", host}})
		if err == nil {
			t.Errorf("Generate accepted host %q", host)
			continue
		}
		if !strings.Contains(err.Error(), "host") {
			t.Errorf("host %q: error %q does not say which input is wrong", host, err)
		}
		if _, statErr := os.Stat(dir); statErr == nil {
			t.Errorf("host %q: Generate created %s although it failed", host, dir)
		}
	}
}
