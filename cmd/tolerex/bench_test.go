package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/tolerex/tolerex/gateway/loadgen"
)

// runBenchCommand runs "tolerex bench args..." through the root command.
func runBenchCommand(t *testing.T, args ...string) (stdout string, err error) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"bench"}, args...))
	err = root.Execute()
	return out.String(), err
}

// TestBenchFailsOver: two gateways, the first dies after 10 replies on one
// connection. The run goes on at the second, the summary says where the
// requests went and how many were lost, and the exit status reports the
// lost ones as indeterminate errors. The budget of requests is shared by
// all connections, so it is large enough that the first gateway's
// connections reach their 10th reply even if the second's run ahead (with
// 50 of 400, they once did not: 35 each, against 330 on the second).
func TestBenchFailsOver(t *testing.T) {
	first := &clientTestServer{closeAfter: 10, dies: true}
	second := &clientTestServer{prompting: true}
	firstAddr, secondAddr := first.start(t), second.start(t)
	stdout, err := runBenchCommand(t, "--addr", firstAddr+","+secondAddr, "--op", "set", "--conns", "4", "--depth", "2",
		"--ops", "2000", "--warmup", "0s", "--keys", "100000", "--size", "16")
	if err == nil || !regexp.MustCompile(`^\d+ errors \(0 definite, (\d+) indeterminate; (\d+) lost in flight\)`).MatchString(err.Error()) {
		t.Fatalf("err = %v, want the lost requests as indeterminate errors\n%s", err, stdout)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^  errors   definite 0  indeterminate [1-9]\d*  \(lost in flight [1-9]\d*\)$`),
		regexp.MustCompile(`(?m)^  gateway ` + regexp.QuoteMeta(firstAddr) + `  conns 2  requests \d+  errors [1-9]\d*  lost conns 2  left as unavailable 0  sent again 0  reconnects to it 0$`),
		regexp.MustCompile(`(?m)^  gateway ` + regexp.QuoteMeta(secondAddr) + `  conns 2  requests [1-9]\d*  errors 0  lost conns 0  left as unavailable 0  sent again 0  reconnects to it 2$`),
		regexp.MustCompile(`(?m)^  reconnects 2 \(from unavailable gateways 0, their refused requests sent again 0\)  conns given up 0$`),
	} {
		if !want.MatchString(stdout) {
			t.Errorf("summary lacks %s:\n%s", want, stdout)
		}
	}
}

func TestBenchJSONHasGateways(t *testing.T) {
	server := &clientTestServer{}
	addr := server.start(t)
	stdout, err := runBenchCommand(t, "--addr", addr, "--json", "--ops", "50", "--warmup", "0s", "--conns", "2", "--keys", "100")
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stdout)
	}
	var res loadgen.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Gateways) != 1 || res.Gateways[0].Addr != addr || res.Gateways[0].Conns != 2 || res.Gateways[0].Ops != res.Ops {
		t.Errorf("gateways %+v, want the one address with both connections and every request", res.Gateways)
	}
	for _, key := range []string{`"errors_definite": 0`, `"errors_indeterminate": 0`, `"lost_in_flight": 0`, `"reconnects": 0`, `"conns_given_up": 0`} {
		if !strings.Contains(stdout, key) {
			t.Errorf("--json lacks %s", key)
		}
	}
}

func TestBenchAddrErrors(t *testing.T) {
	for _, bad := range []string{"", "a:1,", "127.0.0.1:1,127.0.0.1:1"} {
		if _, err := runBenchCommand(t, "--addr", bad, "--ops", "1"); err == nil || !strings.Contains(err.Error(), "--addr") {
			t.Errorf("--addr %q: %v, want an --addr error", bad, err)
		}
	}
	dead := deadAddr(t)
	other := deadAddr(t)
	if _, err := runBenchCommand(t, "--addr", dead+","+other, "--ops", "1"); err == nil ||
		!strings.Contains(err.Error(), "no server answered at "+dead+", "+other) {
		t.Errorf("bench with nothing listening: %v, want both addresses named", err)
	}
}
