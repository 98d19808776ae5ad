package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/stat and /proc/PID/stat:
// Linux reports them in USER_HZ, which is 100 on every architecture Go
// supports there.
const userHZ = 100

// CPUUse is where the CPU time of one run went, per operation measured:
// the machine's (every process on it, the kernel's work included) and
// that of the cluster's processes by role. On this machine the rows are
// bound by CPU, so throughput follows the machine's CPU per operation.
type CPUUse struct {
	// BusyCores is the machine's cores in use on average (busy time over
	// elapsed time, every core summed).
	BusyCores float64 `json:"machine_busy_cores"`
	// Machine is the machine's busy CPU time per operation, in µs.
	Machine float64 `json:"machine_cpu_us_per_op"`
	// Leader, OtherGateways and Members are the CPU time per operation,
	// in µs, of the gateway that leads, of the other gateways together,
	// and of the members together; LoadGenerator that of this process,
	// which runs the load generator.
	Leader        float64 `json:"leader_cpu_us_per_op"`
	OtherGateways float64 `json:"other_gateways_cpu_us_per_op"`
	Members       float64 `json:"members_cpu_us_per_op"`
	LoadGenerator float64 `json:"load_generator_cpu_us_per_op"`
}

// String shows the use as one compact line.
func (u *CPUUse) String() string {
	if u == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f (%.0f + %.0f + %.0f + %.0f)", u.Machine, u.Leader, u.OtherGateways, u.Members, u.LoadGenerator)
}

// Roles of a cluster's processes.
const (
	roleLeader       = "leader"
	roleOtherGateway = "other gateway"
	roleMember       = "member"
)

// clusterProcess is one process of a running cluster.
type clusterProcess struct {
	pid  int
	role string
}

// cpuSample is the CPU time used up to one moment, in USER_HZ ticks.
type cpuSample struct {
	at        time.Time
	busy, all uint64         // the machine's, every core summed
	procs     map[int]uint64 // by pid
	loadGen   uint64         // this process's
}

// clusterProcesses finds the gateway and member processes whose data
// dirs are inside dir, the gateway whose admin address is leaderAdmin
// taking the leader's role.
func clusterProcesses(dir, leaderAdmin string) ([]clusterProcess, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var found []clusterProcess
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue // gone meanwhile
		}
		if role := roleOf(strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"), dir, leaderAdmin); role != "" {
			found = append(found, clusterProcess{pid: pid, role: role})
		}
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("no gateway or member process with its data dir in %s", dir)
	}
	return found, nil
}

// roleOf returns the role of the process with these arguments in the
// cluster whose data is in dir, or "" if it is not one of its gateways
// or members.
func roleOf(args []string, dir, leaderAdmin string) string {
	if len(args) < 2 {
		return ""
	}
	flag := func(name string) string {
		for i, a := range args {
			if a == name && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, name+"="); ok {
				return v
			}
		}
		return ""
	}
	if !strings.HasPrefix(flag("--data-dir"), filepath.Clean(dir)+string(filepath.Separator)) {
		return ""
	}
	switch args[1] {
	case "gateway":
		if flag("--admin-addr") == leaderAdmin {
			return roleLeader
		}
		return roleOtherGateway
	case "member":
		return roleMember
	}
	return ""
}

// sampleCPU reads the CPU time used so far by the machine, by each of
// procs and by this process.
func sampleCPU(procs []clusterProcess) (cpuSample, error) {
	s := cpuSample{at: time.Now(), procs: make(map[int]uint64, len(procs))}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, fmt.Errorf("read the machine's CPU times: %w", err)
	}
	if s.busy, s.all, err = parseMachineStat(string(stat)); err != nil {
		return s, err
	}
	for _, p := range procs {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
		if err != nil {
			return s, fmt.Errorf("read the CPU time of %s process %d: %w", p.role, p.pid, err)
		}
		if s.procs[p.pid], err = parseProcessStat(string(raw)); err != nil {
			return s, fmt.Errorf("process %d: %w", p.pid, err)
		}
	}
	raw, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return s, fmt.Errorf("read this process's CPU time: %w", err)
	}
	s.loadGen, err = parseProcessStat(string(raw))
	return s, err
}

// parseMachineStat returns the busy and the total CPU time of the
// machine from /proc/stat's first line ("cpu user nice system idle
// iowait irq softirq steal ..."); idle and iowait are not busy.
func parseMachineStat(stat string) (busy, all uint64, err error) {
	line, _, _ := strings.Cut(stat, "\n")
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("unexpected first line of /proc/stat: %q", line)
	}
	var idle uint64
	for i, f := range fields[1:9] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat field %d: %w", i+1, err)
		}
		all += v
		if i == 3 || i == 4 {
			idle += v
		}
	}
	return all - idle, all, nil
}

// parseProcessStat returns a process's user plus system CPU time from its
// /proc/PID/stat (fields 14 and 15, counted after the command name,
// which is in parentheses and may hold spaces).
func parseProcessStat(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no command name in /proc/PID/stat")
	}
	fields := strings.Fields(stat[i+1:])
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("short /proc/PID/stat: %d fields after the command name", len(fields))
	}
	utime, err := strconv.ParseUint(fields[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	stime, err := strconv.ParseUint(fields[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return utime + stime, nil
}

// cpuUse is the CPU time spent between two samples of procs per
// operation, for ops operations.
func cpuUse(procs []clusterProcess, from, to cpuSample, ops float64) *CPUUse {
	if ops <= 0 || to.all <= from.all {
		return nil
	}
	elapsed := to.at.Sub(from.at).Seconds()
	cores := float64(to.all-from.all) / userHZ / elapsed // every core's time passes at once
	busy := float64(to.busy-from.busy) / float64(to.all-from.all) * cores
	perOp := func(ticks uint64) float64 { return float64(ticks) / userHZ / ops * 1e6 }
	u := &CPUUse{
		BusyCores:     busy,
		Machine:       busy * elapsed / ops * 1e6,
		LoadGenerator: perOp(to.loadGen - from.loadGen),
	}
	for _, p := range procs {
		spent := perOp(to.procs[p.pid] - from.procs[p.pid])
		switch p.role {
		case roleLeader:
			u.Leader += spent
		case roleOtherGateway:
			u.OtherGateways += spent
		case roleMember:
			u.Members += spent
		}
	}
	return u
}
