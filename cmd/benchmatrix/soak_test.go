package main

import (
	"math"
	"testing"
	"time"

	"github.com/tolerex/tolerex/gateway/loadgen"
)

func TestSoakFaultsTakeTurns(t *testing.T) {
	want := []string{"SIGKILL gateway-3", "SIGKILL member-3", "SIGSTOP gateway-3", "SIGSTOP member-3", "SIGKILL gateway-3"}
	for i, w := range want {
		if f := soakFaultAt(i); f.Kind+" "+f.Node != w {
			t.Errorf("fault %d: %s %s, want %s", i, f.Kind, f.Node, w)
		}
	}
	for node, touched := range map[string]bool{"gateway-1": false, "gateway-3": true, "member-2": false, "member-3": true} {
		if soakTouched(node) != touched {
			t.Errorf("soakTouched(%s) = %v", node, !touched)
		}
	}
}

// samplesOf makes one sample a minute for 20 minutes of a node whose
// memory is rss(minute) MB.
func samplesOf(node string, rss func(minute int) int64) []SoakSample {
	var out []SoakSample
	for m := 0; m <= 20; m++ {
		out = append(out, SoakSample{AtSec: float64(60 * m), Node: node, Pid: 100 + m/15, RSSBytes: rss(m) << 20,
			OpenFiles: 30, Goroutines: 90 + int64(m%3), HeapInuseBytes: 50 << 20})
	}
	return out
}

func TestSummarizeSamplesShowsGrowth(t *testing.T) {
	flat := samplesOf("gateway-1", func(m int) int64 { return min(200, 30+int64(m)*60) })
	growing := samplesOf("member-3", func(m int) int64 { return 100 + 10*int64(m) })
	// Paused at minute 15: not measured.
	flat[15] = SoakSample{AtSec: 900, Node: "gateway-1", RSSBytes: -1, OpenFiles: -1, Goroutines: -1, HeapInuseBytes: -1}
	sums := summarizeSamples(append(flat, growing...), 5*time.Minute, 20*time.Minute)
	if len(sums) != 2 || sums[0].Node != "gateway-1" || sums[1].Node != "member-3" {
		t.Fatalf("nodes %+v", sums)
	}
	g, m := sums[0], sums[1]
	if g.Touched || !m.Touched {
		t.Errorf("faulted: gateway-1 %v, member-3 %v", g.Touched, m.Touched)
	}
	if g.Starts != 2 {
		t.Errorf("gateway-1 ran as %d processes, want 2 (pids 100 and 101)", g.Starts)
	}
	// Settled from minute 5: the first half is minutes 5..12, the second
	// 13..20 (the middle is 12.5).
	if g.FirstSettled.AtSec != 300 || g.First.AtSec != 0 || g.Last.AtSec != 1200 {
		t.Errorf("gateway-1 first %v, first settled %v, last %v", g.First.AtSec, g.FirstSettled.AtSec, g.Last.AtSec)
	}
	if g.FirstHalf.RSS.N != 8 || g.SecondHalf.RSS.N != 7 {
		t.Errorf("gateway-1 halves hold %d and %d samples, want 8 and 7 (the paused one not measured)", g.FirstHalf.RSS.N, g.SecondHalf.RSS.N)
	}
	if g.RSSGrowth != 1 {
		t.Errorf("gateway-1 growth %v, want 1", g.RSSGrowth)
	}
	if want := 300.0 / 220; math.Abs(m.RSSGrowth-want) > 1e-9 {
		t.Errorf("member-3 growth %v, want %v (300 MB over 220 MB)", m.RSSGrowth, want)
	}
	if r := m.Settled.Goroutines; r.Min != 90 || r.Max != 92 || r.N != 16 {
		t.Errorf("member-3 goroutines %+v", r)
	}
}

func TestThroughputByTenth(t *testing.T) {
	var series []loadgen.Second
	for s := range 100 {
		series = append(series, loadgen.Second{Second: s, Ops: int64(100 * (s/10 + 1))})
	}
	got := throughputByTenth(series)
	for i, v := range got {
		if v != float64(100*(i+1)) {
			t.Fatalf("tenths %v", got)
		}
	}
	if throughputByTenth(nil) != nil {
		t.Error("no series should give no tenths")
	}
}

func TestReadingProcAndMetrics(t *testing.T) {
	status := []byte("Name:\ttolerex\nVmPeak:\t  999 kB\nVmRSS:\t  204800 kB\nThreads:\t9\n")
	if got := statusRSS(status); got != 200<<20 {
		t.Errorf("statusRSS = %d", got)
	}
	if got := statusRSS([]byte("Name:\tx\n")); got != -1 {
		t.Errorf("statusRSS without VmRSS = %d", got)
	}
	metrics := []byte("# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 121\n" +
		"go_goroutines_total_bogus 5\ngo_memstats_heap_inuse_bytes 1.34217728e+08\n")
	if got := metricValue(metrics, "go_goroutines"); got != 121 {
		t.Errorf("go_goroutines = %d", got)
	}
	if got := metricValue(metrics, "go_memstats_heap_inuse_bytes"); got != 134217728 {
		t.Errorf("heap in use = %d", got)
	}
	if got := metricValue(metrics, "go_threads"); got != -1 {
		t.Errorf("a missing metric = %d", got)
	}
}

func TestMachineTimesFromProcStat(t *testing.T) {
	stat := []byte("cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 50 2 25 400 10 1 1 5 0 0\nintr 1\n")
	busy, steal, total, err := machineTimes(stat)
	if err != nil {
		t.Fatal(err)
	}
	// 990 ticks in all; busy leaves out idle 800, iowait 20 and steal 10.
	if busy != 1600*time.Millisecond || steal != 100*time.Millisecond || total != 9900*time.Millisecond {
		t.Errorf("busy %v, steal %v, total %v; want 1.6s, 100ms, 9.9s", busy, steal, total)
	}
	for _, bad := range []string{"", "intr 1\n", "cpu 1 2 3\n", "cpu 1 2 3 4 5 6 7 x 9\n"} {
		if _, _, _, err := machineTimes([]byte(bad)); err == nil {
			t.Errorf("machineTimes(%q) took it", bad)
		}
	}
}

func TestSoakTenthsShowWhereTheCPUWent(t *testing.T) {
	// 100 s of load: 1,000 requests a second, then 500 from second 50.
	var series []loadgen.Second
	for s := range 100 {
		ops := int64(1000)
		if s >= 50 {
			ops = 500
		}
		series = append(series, loadgen.Second{Second: s, Ops: ops})
	}
	// Samples every 10 s, and one after the load (left out: it would
	// add 100 s of CPU). The machine: 2 cores, half busy, 5% stolen;
	// the load generator 0.2 cores.
	var machine []SoakMachineSample
	var nodes []SoakSample
	for at := 0; at <= 110; at += 10 {
		x := float64(at)
		if at == 110 {
			x = 1000 // far more than the 10 s: shows if it counted
		}
		machine = append(machine, SoakMachineSample{AtSec: float64(at), LoadGenCPUSec: 0.2 * x, BusySec: x, StealSec: 0.1 * x, TotalSec: 2 * x})
		// gateway-1: 0.5 cores all along (paused at 70 s: CPU still read).
		g := SoakSample{AtSec: float64(at), Node: "gateway-1", Pid: 10, CPUSec: 0.5 * x, RSSBytes: 1}
		if at == 70 {
			g.RSSBytes = -1
		}
		// member-3: 0.3 cores; killed and restarted between 30 and 40 s
		// (the new process has used more CPU by 40 s than the old one
		// by 30: only its pid tells), then killed before 70 s and not
		// running then.
		m := SoakSample{AtSec: float64(at), Node: "member-3", Pid: 20, CPUSec: 0.3 * x}
		switch {
		case at == 70:
			m = SoakSample{AtSec: 70, Node: "member-3", CPUSec: -1}
		case at >= 80:
			m.Pid, m.CPUSec = 22, 0.3*(x-80)
		case at >= 40:
			m.Pid, m.CPUSec = 21, 20+0.3*(x-40)
		}
		nodes = append(nodes, g, m)
	}
	tenths, err := soakTenths(nodes, machine, series, 100*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(tenths) != 10 {
		t.Fatalf("%d tenths", len(tenths))
	}
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	for i, x := range tenths {
		rps, cores := 1000.0, 0.8
		if i >= 5 {
			rps = 500
		}
		if i == 3 || i == 6 || i == 7 {
			cores = 0.5 // member-3's intervals 30-40 (another pid), 60-70 and 70-80 (not running at 70) are left out
		}
		if !near(x.RequestsPerSec, rps) || !near(x.ClusterCores, cores) || !near(x.ClusterCPUPerRequest, cores/rps*1e6) ||
			!near(x.LoadGenCores, 0.2) || !near(x.MachineBusy, 0.5) || !near(x.Steal, 0.05) {
			t.Errorf("tenth %d: %+v; want %v requests/s, %v cores, %v µs a request, load generator 0.2 cores, machine 50%% busy, 5%% steal",
				i+1, x, rps, cores, cores/rps*1e6)
		}
	}
	if _, err := soakTenths(nodes, machine, series, 0); err == nil {
		t.Error("a run of length 0 gave tenths")
	}
}
