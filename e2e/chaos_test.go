package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tolerex/tolerex/e2e/chaos"
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
			if sum := chaosRun(t, cfg); !sum.Passed {
				t.Errorf("chaos run failed: %s", strings.Join(sum.Failures, "; "))
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
