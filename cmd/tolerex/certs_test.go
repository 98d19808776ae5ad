package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tolerex/tolerex/cluster/certs"
)

// runTolerex runs the root command with args and returns its output.
func runTolerex(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestCertsCommandWritesAndRefuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	out, err := runTolerex(t, "certs", "--dir", dir, "--hosts", "node1.tolerex.test,10.1.2.3")
	if err != nil {
		t.Fatalf("tolerex certs: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	names := []string{"ca.crt", "ca.key", "gateway.crt", "gateway.key", "member.crt", "member.key"}
	if len(lines) != len(names)+1 {
		t.Fatalf("output has %d lines, want %d:\n%s", len(lines), len(names)+1, out)
	}
	for i, name := range names {
		if lines[i] != filepath.Join(dir, name) {
			t.Errorf("line %d is %q, want %q", i+1, lines[i], filepath.Join(dir, name))
		}
	}
	if !strings.Contains(lines[len(lines)-1], "--tls-dir "+dir) {
		t.Errorf("hint line %q does not mention --tls-dir %s", lines[len(lines)-1], dir)
	}
	node, err := certs.LoadNode(dir, certs.RoleGateway)
	if err != nil {
		t.Fatalf("LoadNode: %v", err)
	}
	if err := node.Server.Certificates[0].Leaf.VerifyHostname("node1.tolerex.test"); err != nil {
		t.Errorf("--hosts entry missing from the certificate: %v", err)
	}

	_, err = runTolerex(t, "certs", "--dir", dir)
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second run without --force: %v, want a refusal mentioning --force", err)
	}
	if _, err := runTolerex(t, "certs", "--dir", dir, "--force"); err != nil {
		t.Errorf("run with --force: %v", err)
	}
}

func TestCertsCommandNeedsDir(t *testing.T) {
	_, err := runTolerex(t, "certs")
	if err == nil || !strings.Contains(err.Error(), "--dir is required") {
		t.Errorf("tolerex certs without --dir: %v, want a missing --dir error", err)
	}
}

func TestCertsCommandReadsEnvironment(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	t.Setenv("TOLEREX_DIR", dir)
	t.Setenv("TOLEREX_HOSTS", "env.tolerex.test")
	if out, err := runTolerex(t, "certs"); err != nil {
		t.Fatalf("tolerex certs with TOLEREX_DIR: %v\n%s", err, out)
	}
	node, err := certs.LoadNode(dir, certs.RoleMember)
	if err != nil {
		t.Fatalf("LoadNode: %v", err)
	}
	if err := node.Client.Certificates[0].Leaf.VerifyHostname("env.tolerex.test"); err != nil {
		t.Errorf("TOLEREX_HOSTS entry missing from the certificate: %v", err)
	}
}
