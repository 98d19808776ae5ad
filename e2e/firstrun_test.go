package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tolerex/tolerex/actors/leader"
)

// waitLeaderActive waits until the gateway with the given admin address
// serves requests: /readyz is 200, or 503 only for lack of live members
// (a gateway started without members is never ready, but its leader is
// active and answers).
func waitLeaderActive(t testing.TB, c *Child, adminAddr string) {
	t.Helper()
	view := AdminView("gateway", adminAddr)
	Eventually(t, 20*time.Second, "gateway leader active", func() (bool, string) {
		if exited, code := c.Exited(); exited {
			t.Fatalf("gateway exited (code %d) before its leader was active\n%s", code, c.Output())
		}
		status, body := readyz(view)
		return status == 200 || (status == 503 && strings.Contains(body, "live members")),
			"gateway /readyz: " + strings.TrimSpace(body)
	})
}

// TestAPIMessagesShowsReplicaFigures: /api/messages/{id} splits the
// version into its epoch and counter, gives the message's size, and shows
// each replica with the same figures /api/cluster shows for that member
// (it used to show zero messages and bytes).
func TestAPIMessagesShowsReplicaFigures(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	cl := c.Dial(t)
	led := newLedger()
	pipelineSet(t, cl, led, 0, 200, "figures-")
	if err := cl.Set(7, []byte("seven")); err != nil {
		t.Fatalf("SET 7: %v", err)
	}

	// Members report their figures in heartbeats; compare once a
	// location and the cluster status read around it agree.
	Eventually(t, 10*time.Second, "location and cluster figures agree", func() (bool, string) {
		loc := location(t, c, 7)
		st := c.Status(t)
		if !loc.Found || len(loc.Replicas) != 2 {
			return false, fmt.Sprintf("location of 7: %+v, want found with 2 replicas", loc)
		}
		if loc.Epoch != st.Epoch || loc.Version != loc.Epoch<<40|loc.Counter || loc.Counter == 0 {
			return false, fmt.Sprintf("version %d epoch %d counter %d, cluster epoch %d: want version = epoch<<40|counter, epoch = the cluster's",
				loc.Version, loc.Epoch, loc.Counter, st.Epoch)
		}
		if loc.Size != uint32(len("seven")) {
			return false, fmt.Sprintf("size %d, want %d", loc.Size, len("seven"))
		}
		for _, r := range loc.Replicas {
			var m *leader.MemberStatus
			for i := range st.Members {
				if st.Members[i].Slot == r.Slot {
					m = &st.Members[i]
				}
			}
			if m == nil {
				return false, fmt.Sprintf("replica slot %d not in /api/cluster", r.Slot)
			}
			if r.Messages == 0 || r.Bytes == 0 || r.Indexed == 0 {
				return false, fmt.Sprintf("replica %s shows messages=%d bytes=%d indexed=%d, want non-zero", r.ID, r.Messages, r.Bytes, r.Indexed)
			}
			if r.ID != m.ID || r.Messages != m.Messages || r.Bytes != m.Bytes || r.Indexed != m.Indexed || r.Alive != m.Alive || r.StorageReady != m.StorageReady {
				return false, fmt.Sprintf("replica %+v differs from /api/cluster's %+v", r, *m)
			}
		}
		return true, ""
	})
}

// TestCLIDevReportsNotReady makes a node stay not ready for real: member-1's
// storage actor is crashed past its restart limit, so the supervisor stops
// it for good and the member stays up but not ready; with 2 members and
// tolerance 2 the gateway is then not ready either (1 live member). dev
// names both, once, with their admin address and /readyz reason, and says
// when they are ready again after member-1 is killed and restarted.
func TestCLIDevReportsNotReady(t *testing.T) {
	const members = 2
	nodePort, adminPort := devPorts(t, members)
	clientAddr := FreeAddr(t)
	dataDir := t.TempDir()
	dev := StartChild(t, bin, ChildOptions{
		Args: []string{"dev", "--gateways", "1", "--data-dir", dataDir, "--members", strconv.Itoa(members), "--tolerance", "2",
			"--client-addr", clientAddr, "--node-port", strconv.Itoa(nodePort), "--admin-port", strconv.Itoa(adminPort),
			"--report-not-ready-after", "3s"},
		// Inherited by the members (dev and the gateway have no such flags):
		// give up on the second storage crash instead of the eleventh.
		Env: []string{"TOLEREX_STORAGE_MAX_RESTARTS=1", "TOLEREX_STORAGE_MAX_BACKOFF=100ms"},
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range []string{"gateway", "member-1", "member-2"} {
				data, _ := os.ReadFile(filepath.Join(dataDir, "logs", name+".log"))
				if len(data) > 3000 {
					data = data[len(data)-3000:]
				}
				t.Logf("---- dev %s log tail ----\n%s", name, data)
			}
		}
	})
	dev.WaitStdout(t, regexp.MustCompile(`cluster ready`), 45*time.Second)
	gwAdmin := net.JoinHostPort("127.0.0.1", strconv.Itoa(adminPort))
	m1Admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(adminPort+1))
	member1 := AdminView("member-1", m1Admin)

	// Crash member-1's storage actor until its supervisor gives up.
	Eventually(t, 20*time.Second, "member-1 storage given up", func() (bool, string) {
		status, body := readyz(member1)
		if status == 503 && strings.Contains(body, "kept crashing") {
			return true, ""
		}
		member1.Post(t, "/debug/fault/storage-panic")
		return false, fmt.Sprintf("member-1 /readyz %d %q", status, body)
	})

	notReady := func(name, admin string) *regexp.Regexp {
		return regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d ` + regexp.QuoteMeta(fmt.Sprintf("%-9s", name)) +
			` not ready for (\d+)s: (not ready: [^\n]*) \(admin ` + regexp.QuoteMeta(admin) + `\)$`)
	}
	m := dev.WaitStdout(t, notReady("member-1", m1Admin), 15*time.Second)
	if !strings.Contains(m[2], "storage") {
		t.Errorf("member-1's reason %q does not name its storage", m[2])
	}
	if secs, _ := strconv.Atoi(m[1]); secs < 3 {
		t.Errorf("member-1 reported after %ss, want at least 3s", m[1])
	}
	m = dev.WaitStdout(t, notReady("gateway", gwAdmin), 15*time.Second)
	if !strings.Contains(m[2], "1 live members, tolerance 2") {
		t.Errorf("gateway's reason %q does not say 1 live member for tolerance 2", m[2])
	}

	// Restarting member-1 (dev does it after a SIGKILL) opens its storage
	// again: both are ready again, and each was reported not ready once.
	started := dev.WaitStdout(t, regexp.MustCompile(`member-1  started pid=(\d+) `), time.Second)
	pid, _ := strconv.Atoi(started[1])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill member-1 (pid %d): %v", pid, err)
	}
	dev.WaitStdout(t, regexp.MustCompile(`(?m)^\S+ member-1  ready again \(was not ready for \d+s\)$`), 30*time.Second)
	dev.WaitStdout(t, regexp.MustCompile(`(?m)^\S+ gateway   ready again \(was not ready for \d+s\)$`), 15*time.Second)
	out := dev.Stdout()
	for _, name := range []string{"member-1", "gateway"} {
		if n := strings.Count(out, fmt.Sprintf("%-9s not ready for", name)); n != 1 {
			t.Errorf("%s reported not ready %d times, want once\n%s", name, n, out)
		}
	}
	if strings.Contains(out, "member-2  not ready") {
		t.Errorf("member-2 reported not ready\n%s", out)
	}

	if err := dev.Signal(os.Interrupt); err != nil {
		t.Fatalf("SIGINT dev: %v", err)
	}
	if code := dev.Wait(t, 20*time.Second); code != 0 {
		t.Errorf("dev exited %d after SIGINT, want 0\n%s", code, dev.Output())
	}
}
