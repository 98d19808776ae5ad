package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/tolerex/tolerex/cluster/local/cputime"
	"github.com/tolerex/tolerex/gateway/loadgen"
)

// SoakMachineSample is the machine and the load generator at one moment
// of a soak run, as running totals: the CPU time this process (the load
// generator) has used, and the machine's busy, steal and total time over
// all cores from /proc/stat. -1 means unknown.
type SoakMachineSample struct {
	AtSec         float64 `json:"at_s"`
	LoadGenCPUSec float64 `json:"load_generator_cpu_s"`
	BusySec       float64 `json:"machine_busy_s"`
	StealSec      float64 `json:"machine_steal_s"`
	TotalSec      float64 `json:"machine_total_s"`
}

// SoakTenth is one tenth of a soak run: the load's requests a second and
// where the CPU went meanwhile. A tenth with no CPU samples has -1 there.
type SoakTenth struct {
	RequestsPerSec float64 `json:"requests_per_s"`
	// ClusterCores is the cores the cluster's processes kept busy, from
	// their own CPU times; ClusterCPUPerRequest the same per request, in
	// µs.
	ClusterCores         float64 `json:"cluster_cores"`
	ClusterCPUPerRequest float64 `json:"cluster_cpu_us_per_request"`
	LoadGenCores         float64 `json:"load_generator_cores"`
	// MachineBusy and Steal are fractions of all the machine's cores,
	// from /proc/stat (whole clock ticks: it misses short bursts, so the
	// processes' own times are the better count of what they used).
	MachineBusy float64 `json:"machine_busy"`
	Steal       float64 `json:"machine_steal"`
}

// machineTimes reads the busy, steal and total CPU time of all cores
// from the text of /proc/stat: its first line, "cpu" and the times in
// USER_HZ ticks (user nice system idle iowait irq softirq steal ...).
// Busy excludes idle, iowait and steal; guest time is inside user.
func machineTimes(stat []byte) (busy, steal, total time.Duration, err error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	fields := bytes.Fields(line)
	if len(fields) < 9 || string(fields[0]) != "cpu" {
		return 0, 0, 0, fmt.Errorf("no cpu line with 8 times in /proc/stat: %q", clip(line))
	}
	var ticks [8]int64
	for i := range ticks {
		if ticks[i], err = strconv.ParseInt(string(fields[i+1]), 10, 64); err != nil {
			return 0, 0, 0, fmt.Errorf("/proc/stat cpu time %d: %w", i+1, err)
		}
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100
	var all int64
	for _, t := range ticks {
		all += t
	}
	idle, iowait, stolen := ticks[3], ticks[4], ticks[7]
	return time.Duration(all-idle-iowait-stolen) * tick, time.Duration(stolen) * tick, time.Duration(all) * tick, nil
}

// sampleMachine reads the load generator's CPU time and the machine's.
func sampleMachine(start time.Time) SoakMachineSample {
	s := SoakMachineSample{AtSec: time.Since(start).Seconds(), LoadGenCPUSec: -1, BusySec: -1, StealSec: -1, TotalSec: -1}
	if used, err := cputime.Of(os.Getpid()); err == nil {
		s.LoadGenCPUSec = used.Seconds()
	}
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		if busy, steal, total, err := machineTimes(data); err == nil {
			s.BusySec, s.StealSec, s.TotalSec = busy.Seconds(), steal.Seconds(), total.Seconds()
		}
	}
	return s
}

// soakTenths splits a run of length run into tenths: the load's requests
// a second in each (from its per-second series) and the CPU the cluster,
// the load generator and the machine spent. Each interval between two
// samples counts in the tenth of its middle; intervals whose middle is
// after the run (the samples after the load) are left out, and so is a
// node's interval in which it was restarted (another pid) or not
// measured.
func soakTenths(nodes []SoakSample, machine []SoakMachineSample, series []loadgen.Second, run time.Duration) ([]SoakTenth, error) {
	if run <= 0 {
		return nil, errors.New("soak tenths: no run length")
	}
	tenths := make([]SoakTenth, 10)
	for t, rps := range throughputByTenth(series) {
		tenths[t].RequestsPerSec = rps
	}
	end := run.Seconds()
	tenthOf := func(from, to float64) (int, bool) {
		middle := (from + to) / 2
		if to <= from || middle >= end {
			return 0, false
		}
		return int(middle * 10 / end), true
	}
	var seconds, cluster, loadGen, busy, steal, total [10]float64
	for i := 1; i < len(machine); i++ {
		a, b := machine[i-1], machine[i]
		t, ok := tenthOf(a.AtSec, b.AtSec)
		if !ok {
			continue
		}
		seconds[t] += b.AtSec - a.AtSec
		if a.LoadGenCPUSec >= 0 && b.LoadGenCPUSec >= 0 {
			loadGen[t] += b.LoadGenCPUSec - a.LoadGenCPUSec
		}
		if a.TotalSec >= 0 && b.TotalSec > a.TotalSec {
			busy[t] += b.BusySec - a.BusySec
			steal[t] += b.StealSec - a.StealSec
			total[t] += b.TotalSec - a.TotalSec
		}
	}
	last := map[string]SoakSample{}
	for _, s := range nodes {
		prev, seen := last[s.Node]
		last[s.Node] = s
		if !seen || s.Pid <= 0 || s.Pid != prev.Pid || prev.CPUSec < 0 || s.CPUSec < prev.CPUSec {
			continue
		}
		if t, ok := tenthOf(prev.AtSec, s.AtSec); ok {
			cluster[t] += s.CPUSec - prev.CPUSec
		}
	}
	for t := range tenths {
		x := &tenths[t]
		x.ClusterCores, x.ClusterCPUPerRequest, x.LoadGenCores, x.MachineBusy, x.Steal = -1, -1, -1, -1, -1
		if seconds[t] > 0 {
			x.ClusterCores = cluster[t] / seconds[t]
			x.LoadGenCores = loadGen[t] / seconds[t]
			if x.RequestsPerSec > 0 {
				x.ClusterCPUPerRequest = x.ClusterCores / x.RequestsPerSec * 1e6
			}
		}
		if total[t] > 0 {
			x.MachineBusy, x.Steal = busy[t]/total[t], steal[t]/total[t]
		}
	}
	return tenths, nil
}
