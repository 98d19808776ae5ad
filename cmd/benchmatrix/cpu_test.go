package main

import (
	"math"
	"os"
	"testing"
	"time"
)

func TestParseProcessStat(t *testing.T) {
	// The command name may hold spaces and parentheses; utime 1234 and
	// stime 567 are fields 14 and 15.
	stat := "4242 (tx (a) b) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 9 0 100 0 0\n"
	got, err := parseProcessStat(stat)
	if err != nil {
		t.Fatal(err)
	}
	if got != 1801 {
		t.Fatalf("CPU ticks %d, want 1234+567", got)
	}
	if _, err := parseProcessStat("4242 (tx) S 1 2"); err == nil {
		t.Fatal("a short /proc/PID/stat was accepted")
	}
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip("no /proc here:", err)
	}
	if _, err := parseProcessStat(string(self)); err != nil {
		t.Fatalf("this process's own stat: %v", err)
	}
}

func TestRoleOf(t *testing.T) {
	dir := "/tmp/tolerex-bench-1"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"/bin/tolerex", "gateway", "--admin-addr", "127.0.0.1:17020", "--data-dir", dir + "/gateway1"}, roleLeader},
		{[]string{"/bin/tolerex", "gateway", "--admin-addr=127.0.0.1:17120", "--data-dir=" + dir + "/gateway2"}, roleOtherGateway},
		{[]string{"/bin/tolerex", "member", "--data-dir", dir + "/member-1"}, roleMember},
		{[]string{"/bin/tolerex", "dev", "--data-dir", dir}, ""},                                 // the supervisor of the cluster
		{[]string{"/bin/tolerex", "member", "--data-dir", "/tmp/tolerex-bench-10/member-1"}, ""}, // another cluster's
		{[]string{"/bin/tolerex"}, ""},
	} {
		if got := roleOf(tc.args, dir, "127.0.0.1:17020"); got != tc.want {
			t.Errorf("roleOf(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestCPUUse(t *testing.T) {
	procs := []clusterProcess{{1, roleLeader}, {2, roleOtherGateway}, {3, roleOtherGateway}, {4, roleMember}}
	at := time.Unix(1000, 0)
	from := cpuSample{at: at, procs: map[int]uint64{1: 10, 2: 10, 3: 10, 4: 10}, loadGen: 7}
	// 2 s and 10,000 operations; 210 ticks of CPU time in all.
	to := cpuSample{at: at.Add(2 * time.Second), procs: map[int]uint64{1: 110, 2: 30, 3: 40, 4: 60}, loadGen: 17}
	u := cpuUse(procs, from, to, 10_000)
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	near("cores", u.Cores, 1.05)                      // 2.1 s of CPU in 2 s
	near("µs/op", u.Total, 210)                       // 2.1 s of CPU over 10,000 ops
	near("leader µs/op", u.Leader, 100)               // 100 ticks = 1 s
	near("other gateways µs/op", u.OtherGateways, 50) // 20 + 30 ticks
	near("members µs/op", u.Members, 50)
	near("load generator µs/op", u.LoadGenerator, 10)
	if cpuUse(procs, from, to, 0) != nil {
		t.Error("a use per operation for no operations")
	}
}
