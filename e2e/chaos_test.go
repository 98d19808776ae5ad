package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tolerex/tolerex/e2e/chaos"
	"github.com/tolerex/tolerex/e2e/chaos/diskfault"
	"github.com/tolerex/tolerex/e2e/chaos/netfault"
	"github.com/tolerex/tolerex/e2e/chaos/summary"
)

// The short fault suite of CI: three 30-second runs (member faults,
// gateway faults, a mix of everything) that must pass, and the planted
// bugs that it must find. `make chaos` runs the long version.

// chaosRun runs the fault suite with cfg (on the e2e binary unless cfg
// names one) and returns its summary. The output dir is removed when the
// test passes and kept (and named) when it fails.
func chaosRun(t *testing.T, cfg chaos.Config) summary.Summary {
	t.Helper()
	if cfg.Binary == "" {
		cfg.Binary = bin
	}
	out, err := os.MkdirTemp("", "tolerex-chaos-test-")
	if err != nil {
		t.Fatal(err)
	}
	cfg.OutDir = out
	var log strings.Builder
	cfg.Log = &log
	sum, err := chaos.Run(context.Background(), cfg)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("chaos output kept in %s", out)
			return
		}
		os.RemoveAll(out)
	})
	if err != nil {
		t.Fatalf("chaos run could not be carried out: %v\n%s", err, log.String())
	}
	t.Logf("%s", sum.Text())
	if !sum.Passed {
		t.Logf("progress:\n%s", log.String())
	}
	return sum
}

// withoutPartitions drops partitions from a fault mix where iptables or
// root is missing, and says so.
func withoutPartitions(t *testing.T, spec string) string {
	t.Helper()
	err := netfault.Available()
	if err == nil {
		return spec
	}
	t.Logf("running without partitions: %v", err)
	switch spec {
	case "member":
		return "kill:member,pause:member"
	case "gateway":
		return "kill:gateway,pause:gateway,kill:leader,pause:leader"
	}
	return "kills,pauses,kill:minority,pause:minority,kill:majority,pause:majority"
}

// TestChaos is the short fault suite: each run must be linearizable, keep
// the minimum throughput, recover, and lose nothing across the final
// whole-cluster restart.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite takes minutes")
	}
	for _, tc := range []struct {
		name   string
		faults string
		seed   uint64
	}{
		{"member", "member", 1001},
		{"gateway", "gateway", 1002},
		{"mixed", "mixed", 1003},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := chaos.Defaults()
			cfg.Faults, cfg.Seed = withoutPartitions(t, tc.faults), tc.seed
			sum := chaosRun(t, cfg)
			if !sum.Passed {
				t.Errorf("chaos run failed (seed %d, faults %s, output in %s): %s", tc.seed, cfg.Faults, sum.OutputDir, strings.Join(sum.Failures, "; "))
			}
		})
	}
}

// plantedConfig is the run that must catch a write acknowledged before it
// is durable: the gateway is killed every second or two under writes.
func plantedConfig() chaos.Config {
	cfg := chaos.Defaults()
	cfg.Faults, cfg.Seed, cfg.Duration = "kill:gateway", 2001, 15*time.Second
	cfg.Interval, cfg.MinHold, cfg.MaxHold = 1500*time.Millisecond, 300*time.Millisecond, time.Second
	// A gateway that restarts this often serves little; the run is about
	// catching the bug, not throughput.
	cfg.MinThroughput = 5
	return cfg
}

// buildPlanted builds the tolerex binary with a planted bug's tag.
func buildPlanted(t *testing.T, tag string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tolerex-"+tag)
	cmd := exec.Command("go", "build", "-tags", tag, "-o", path, "github.com/tolerex/tolerex/cmd/tolerex")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags %s: %v\n%s", tag, err, out)
	}
	return path
}

// assertViolation checks that a run reported a linearizability violation
// with its visualization.
func assertViolation(t *testing.T, sum summary.Summary) {
	t.Helper()
	if sum.Passed || sum.Linearizable || sum.Verdict != "not linearizable" || len(sum.BadIDs) == 0 {
		t.Fatalf("the checker missed the planted bug: verdict %q, passed %v", sum.Verdict, sum.Passed)
	}
	if sum.Visualization == "" {
		t.Fatal("no visualization written")
	}
	data, err := os.ReadFile(sum.Visualization)
	if err != nil || !strings.Contains(string(data), "<html") {
		t.Fatalf("visualization %s: %v", sum.Visualization, err)
	}
}

// TestChaosFindsPlantedBugs shows that the checker fails: a leader that
// acknowledges SETs before their index entry is durable loses them when
// the gateway is killed, and the same run on the real binary passes; a
// leader that silently drops acknowledged writes is caught with no fault
// at all.
func TestChaosFindsPlantedBugs(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite takes minutes")
	}
	t.Run("ack-before-durable", func(t *testing.T) {
		cfg := plantedConfig()
		cfg.Binary = buildPlanted(t, "tolerex_plantedbug_ackearly")
		assertViolation(t, chaosRun(t, cfg))
	})
	t.Run("same-seed-real-binary", func(t *testing.T) {
		if sum := chaosRun(t, plantedConfig()); !sum.Passed {
			t.Errorf("the run that catches the planted bug fails on the real binary: %s", strings.Join(sum.Failures, "; "))
		}
	})
	t.Run("drop-acknowledged-write", func(t *testing.T) {
		cfg := chaos.Defaults()
		cfg.Faults, cfg.Seed, cfg.Duration = "none", 2002, 8*time.Second
		cfg.Binary = buildPlanted(t, "tolerex_plantedbug_dropwrite")
		assertViolation(t, chaosRun(t, cfg))
	})
}

// TestChaosInterruptTearsDown interrupts `tolerex chaos` (SIGINT) while a
// partition holds and a member's disk is full, and checks that it removed
// its iptables chains, its mounts and every node process before exiting.
func TestChaosInterruptTearsDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	if err := netfault.Available(); err != nil {
		t.Skip(err)
	}
	if err := diskfault.Available(); err != nil {
		t.Skip(err)
	}
	out := t.TempDir()
	cmd := exec.Command(bin, "chaos", "--seed", "7", "--duration", "60s", "--out", out,
		"--faults", "partition:member,disk-full:member", "--concurrent-faults", "2",
		"--fault-interval", "300ms", "--fault-min", "10s", "--fault-max", "20s")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var transcript strings.Builder
	var runDir string
	faults := map[string]bool{}
	deadline := time.After(90 * time.Second)
	for !faults["partition"] || !faults["disk-full"] {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("tolerex chaos ended early:\n%s", transcript.String())
			}
			transcript.WriteString(line + "\n")
			if _, dir, found := strings.Cut(line, "run dir "); found {
				runDir = dir
			}
			for _, kind := range []string{"partition", "disk-full"} {
				if strings.Contains(line, "nemesis: #") && strings.Contains(line, " "+kind+" member [") {
					faults[kind] = true
				}
			}
		case <-deadline:
			t.Fatalf("no partition and full disk at once within 90 s:\n%s", transcript.String())
		}
	}
	pid := cmd.Process.Pid
	chain := netfault.ChainPrefix + strconv.Itoa(pid)
	if rules, _ := exec.Command("iptables", "-S").CombinedOutput(); !strings.Contains(string(rules), chain) {
		t.Fatalf("no chain %s while a partition holds:\n%s", chain, rules)
	}
	if !strings.Contains(readFile(t, "/proc/self/mounts"), runDir) {
		t.Fatalf("no mount under %s while a disk is full", runDir)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for line := range lines { // until tolerex chaos closes its output
		transcript.WriteString(line + "\n")
	}
	err = cmd.Wait()
	if err == nil || !strings.Contains(transcript.String(), "interrupted") {
		t.Errorf("an interrupted run ended with %v and does not say it was interrupted:\n%s", err, transcript.String())
	}
	if rules, _ := exec.Command("iptables", "-S").CombinedOutput(); strings.Contains(string(rules), chain) {
		t.Errorf("chain %s left behind:\n%s", chain, rules)
	}
	if mounts := readFile(t, "/proc/self/mounts"); strings.Contains(mounts, runDir) {
		t.Errorf("mounts under %s left behind", runDir)
	}
	if _, err := os.Stat(runDir); !os.IsNotExist(err) {
		t.Errorf("run dir %s left behind: %v", runDir, err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if data, err := os.ReadFile(p); err == nil && strings.Contains(string(data), runDir) {
			t.Errorf("a node process is left: %s: %q", p, data)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
