package main

import (
	"math"
	"testing"
	"time"
)

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
	tick := 10 * time.Millisecond
	from := cpuSample{at: at, procs: map[int]time.Duration{1: 10 * tick, 2: 10 * tick, 3: 10 * tick, 4: 10 * tick}, loadGen: 7 * tick}
	// 2 s and 10,000 operations; 210 ticks of CPU time in all.
	to := cpuSample{at: at.Add(2 * time.Second), procs: map[int]time.Duration{1: 110 * tick, 2: 30 * tick, 3: 40 * tick, 4: 60 * tick}, loadGen: 17 * tick}
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
