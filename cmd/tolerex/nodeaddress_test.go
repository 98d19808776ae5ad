package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestNodeAddressTyposAreRefused: an address other nodes are to dial
// (--join, --initial-cluster, add-gateway) that cannot be dialled is
// refused at once, naming the flag, instead of being retried in vain.
func TestNodeAddressTyposAreRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"member", "--insecure", "--data-dir", dir + "/m", "--node-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
			"--join", "127.0.0.1:7000,127.0.0.1"}, `--join: node address "127.0.0.1": want host:port`},
		{[]string{"gateway", "--insecure", "--data-dir", dir + "/g", "--node-addr", "127.0.0.1:17999", "--admin-addr", "127.0.0.1:0",
			"--client-addr", "127.0.0.1:0", "--gateway-id", "1", "--initial-cluster", "1=127.0.0.1:17999,2=gw2"},
			`--initial-cluster: gateway 2: node address "gw2": want host:port`},
		{[]string{"gateway", "--insecure", "--data-dir", dir + "/g", "--node-addr", "127.0.0.1:17999", "--admin-addr", "127.0.0.1:0",
			"--client-addr", "127.0.0.1:0", "--gateway-id", "1", "--initial-cluster", "1=127.0.0.1:17999,2=0.0.0.0:7100"},
			"not a wildcard"},
		// Refused before the admin API is asked: nothing listens at port 1.
		{[]string{"cluster", "--admin-addr", "127.0.0.1:1", "add-gateway", "4", "127.0.0.1:0"}, "port 0 cannot be dialled"},
	} {
		// Bounded: a node that took the address would run until stopped.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		root := newRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(tc.args)
		err := root.ExecuteContext(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("tolerex %s: err %v, want one saying %q\n%s", strings.Join(tc.args, " "), err, tc.want, out.String())
		}
	}
}
