package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tolerex/tolerex/cluster/local/cputime"
)

// CPUUse is where the CPU time of one run went, per operation measured:
// the cluster's processes by role and the load generator. The machine's
// own count (/proc/stat) is not used: it charges whole clock ticks to
// whatever runs when they fire, so it misses the many short bursts of
// these processes (at SET 1 conn it showed a fifth less than the
// processes' own times, which the kernel counts exactly). Throughput is
// Cores over Total, always: a row that needs more CPU per operation is
// slower unless its processes keep more cores busy.
type CPUUse struct {
	// Cores is the cores these processes kept busy on average.
	Cores float64 `json:"cores_busy"`
	// Total is their CPU time per operation, in µs: the sum of the rest.
	Total float64 `json:"cpu_us_per_op"`
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
	return fmt.Sprintf("%.0f (%.0f + %.0f + %.0f + %.0f), %.2f cores", u.Total, u.Leader, u.OtherGateways, u.Members, u.LoadGenerator, u.Cores)
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

// cpuSample is the CPU time used up to one moment.
type cpuSample struct {
	at      time.Time
	procs   map[int]time.Duration // by pid
	loadGen time.Duration         // this process's
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

// sampleCPU reads the CPU time used so far by each of procs and by this
// process.
func sampleCPU(procs []clusterProcess) (cpuSample, error) {
	s := cpuSample{at: time.Now(), procs: make(map[int]time.Duration, len(procs))}
	for _, p := range procs {
		used, err := cputime.Of(p.pid)
		if err != nil {
			return s, fmt.Errorf("%s: %w", p.role, err)
		}
		s.procs[p.pid] = used
	}
	var err error
	s.loadGen, err = cputime.Of(os.Getpid())
	return s, err
}

// cpuUse is the CPU time spent between two samples of procs per
// operation, for ops operations.
func cpuUse(procs []clusterProcess, from, to cpuSample, ops float64) *CPUUse {
	elapsed := to.at.Sub(from.at).Seconds()
	if ops <= 0 || elapsed <= 0 {
		return nil
	}
	perOp := func(used time.Duration) float64 { return float64(used.Microseconds()) / ops }
	u := &CPUUse{LoadGenerator: perOp(to.loadGen - from.loadGen)}
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
	u.Total = u.Leader + u.OtherGateways + u.Members + u.LoadGenerator
	u.Cores = u.Total / 1e6 * ops / elapsed
	return u
}
