package e2e

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tolerex/tolerex/actors/leader"
	"github.com/tolerex/tolerex/actors/tree"
	"github.com/tolerex/tolerex/gateway/client"
)

// cliGateway is a gateway started by a CLI test with its own command line.
type cliGateway struct {
	*Child
	adminAddr  string
	clientAddr string
}

// startInsecureGateway starts "tolerex gateway --insecure" in dir on fresh
// addresses, with extra flags appended, and waits until its leader is
// active.
func startInsecureGateway(t *testing.T, dir string, extra ...string) cliGateway {
	t.Helper()
	g := cliGateway{adminAddr: FreeAddr(t), clientAddr: FreeAddr(t)}
	args := append([]string{"gateway", "--insecure", "--data-dir", filepath.Join(dir, "data"),
		"--node-addr", FreeAddr(t), "--admin-addr", g.adminAddr, "--client-addr", g.clientAddr}, extra...)
	g.Child = StartChild(t, bin, ChildOptions{Args: args, Dir: dir})
	waitLeaderActive(t, g.Child, g.adminAddr) // no members: it never becomes ready
	return g
}

func (g cliGateway) status(t *testing.T) leader.ClusterStatus {
	t.Helper()
	var st leader.ClusterStatus
	AdminView("gateway", g.adminAddr).GetJSON(t, "/api/cluster", &st)
	return st
}

// stop sends SIGTERM and expects a clean exit.
func (g cliGateway) stop(t *testing.T) {
	t.Helper()
	if err := g.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM gateway: %v", err)
	}
	if code := g.Wait(t, 15*time.Second); code != 0 {
		t.Errorf("gateway exited %d after SIGTERM, want 0\n%s", code, g.Output())
	}
}

// requireCleanFailure checks that a command failed with a non-zero exit,
// that stderr holds every want, and that it did not panic.
func requireCleanFailure(t *testing.T, c *Child, code int, want ...string) {
	t.Helper()
	if code == 0 {
		t.Fatalf("exit code 0, want a failure\n%s", c.Output())
	}
	stderr := c.Stderr()
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q\n%s", w, c.Output())
		}
	}
	for _, bad := range []string{"panic:", "goroutine ", "runtime/debug"} {
		if strings.Contains(stderr, bad) {
			t.Errorf("stderr has a panic trace (%q)\n%s", bad, c.Output())
		}
	}
}

func TestCLIEnvironmentSetsFlags(t *testing.T) {
	dir := t.TempDir()
	// The file says 1; the environment counts as the flag and wins.
	if err := os.WriteFile(filepath.Join(dir, "tolerance.conf"), []byte("TOLERANCE=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	adminAddr, clientAddr := FreeAddr(t), FreeAddr(t)
	gw := StartChild(t, bin, ChildOptions{
		Args: []string{"gateway"},
		Dir:  dir,
		Env: []string{
			"TOLEREX_TOLERANCE=3",
			"TOLEREX_CLIENT_ADDR=" + clientAddr,
			"TOLEREX_NO_PROMPT=true",
			"TOLEREX_INSECURE=true",
			"TOLEREX_NODE_ADDR=" + FreeAddr(t),
			"TOLEREX_ADMIN_ADDR=" + adminAddr,
			"TOLEREX_DATA_DIR=" + filepath.Join(dir, "data"),
			"TOLEREX_LOG_LEVEL=warn",
			"TOLEREX_GC_PERCENT=250",
		},
	})
	waitLeaderActive(t, gw, adminAddr)
	// No member is running: /readyz says why a SET would fail.
	if status, body := readyz(AdminView("gateway", adminAddr)); status != 503 || !strings.Contains(body, "0 live members, tolerance 3") {
		t.Errorf("/readyz of a gateway without members: %d %q, want 503 naming 0 live members and tolerance 3", status, body)
	}

	// TOLEREX_GC_PERCENT: the Go runtime reports the collector's target.
	if got := gaugeValue(t, MetricsOf(t, AdminView("gateway", adminAddr)), "go_gc_gogc_percent", nil); got != 250 {
		t.Errorf("go_gc_gogc_percent %v, want 250 from TOLEREX_GC_PERCENT", got)
	}

	var st leader.ClusterStatus
	AdminView("gateway", adminAddr).GetJSON(t, "/api/cluster", &st)
	if st.Tolerance != 3 {
		t.Errorf("tolerance %d, want 3 from TOLEREX_TOLERANCE", st.Tolerance)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "raft")); err != nil {
		t.Errorf("TOLEREX_DATA_DIR not used: %v", err)
	}

	// TOLEREX_NO_PROMPT: the first thing the server writes is the reply to
	// PING, not the banner.
	conn, err := net.DialTimeout("tcp", clientAddr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial TOLEREX_CLIENT_ADDR %s: %v", clientAddr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	first, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	if first != "PONG\r\n" {
		t.Errorf("first line %q, want \"PONG\\r\\n\" (no banner, no prompt)", first)
	}

	// TOLEREX_LOG_LEVEL=warn: no info line on stderr.
	for _, line := range strings.Split(strings.TrimSpace(gw.Stderr()), "\n") {
		if strings.Contains(line, `"level":"info"`) || strings.Contains(line, `"level":"debug"`) {
			t.Errorf("info/debug line despite TOLEREX_LOG_LEVEL=warn: %s", line)
		}
	}

	t.Run("flag beats environment", func(t *testing.T) {
		c := StartChild(t, bin, ChildOptions{
			Args: []string{"gateway", "--insecure", "--tolerance", "9", "--data-dir", t.TempDir()},
			Env:  []string{"TOLEREX_TOLERANCE=3"},
		})
		requireCleanFailure(t, c, c.Wait(t, 10*time.Second), "tolerance 9")
	})
	t.Run("bad environment value", func(t *testing.T) {
		c := StartChild(t, bin, ChildOptions{
			Args: []string{"gateway", "--insecure", "--data-dir", t.TempDir()},
			Env:  []string{"TOLEREX_TOLERANCE=many"},
		})
		requireCleanFailure(t, c, c.Wait(t, 10*time.Second), "TOLEREX_TOLERANCE", "many")
	})
}

func TestCLIToleranceFile(t *testing.T) {
	writeConf := func(t *testing.T, content string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "tolerance.conf"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	t.Run("file sets tolerance", func(t *testing.T) {
		t.Parallel()
		gw := startInsecureGateway(t, writeConf(t, "# cluster settings\n\nTOLERANCE=3\n"))
		if st := gw.status(t); st.Tolerance != 3 {
			t.Errorf("tolerance %d, want 3 from tolerance.conf", st.Tolerance)
		}
		if !strings.Contains(gw.Stderr(), `"tolerance_from":"tolerance.conf"`) {
			t.Errorf("start line does not name tolerance.conf as the source\n%s", gw.Output())
		}
		gw.stop(t)
	})
	t.Run("flag overrides file", func(t *testing.T) {
		t.Parallel()
		gw := startInsecureGateway(t, writeConf(t, "TOLERANCE=3\n"), "--tolerance", "1")
		if st := gw.status(t); st.Tolerance != 1 {
			t.Errorf("tolerance %d, want 1 from --tolerance", st.Tolerance)
		}
		gw.stop(t)
	})
	t.Run("tolerance-file flag", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		conf := filepath.Join(t.TempDir(), "other.conf")
		if err := os.WriteFile(conf, []byte("TOLERANCE=4\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		gw := startInsecureGateway(t, dir, "--tolerance-file", conf)
		if st := gw.status(t); st.Tolerance != 4 {
			t.Errorf("tolerance %d, want 4 from --tolerance-file", st.Tolerance)
		}
		gw.stop(t)
	})
	for _, bad := range []struct{ name, content, want string }{
		{"not a number", "TOLERANCE=three\n", "tolerance.conf"},
		{"no equals sign", "TOLERANCE 3\n", "tolerance.conf"},
		{"other key", "REPLICAS=3\n", "tolerance.conf"},
		{"empty", "# nothing\n", "tolerance.conf"},
		{"out of range", "TOLERANCE=9\n", "9"},
	} {
		t.Run("malformed file/"+bad.name, func(t *testing.T) {
			t.Parallel()
			dir := writeConf(t, bad.content)
			c := StartChild(t, bin, ChildOptions{Dir: dir, Args: []string{"gateway", "--insecure",
				"--data-dir", filepath.Join(dir, "data"), "--node-addr", FreeAddr(t),
				"--admin-addr", FreeAddr(t), "--client-addr", FreeAddr(t)}})
			requireCleanFailure(t, c, c.Wait(t, 10*time.Second), bad.want)
		})
	}
	for _, tolerance := range []string{"0", "8", "-1"} {
		t.Run("flag refused/"+tolerance, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			c := StartChild(t, bin, ChildOptions{Dir: dir, Args: []string{"gateway", "--insecure",
				"--tolerance", tolerance, "--data-dir", filepath.Join(dir, "data"), "--node-addr", FreeAddr(t),
				"--admin-addr", FreeAddr(t), "--client-addr", FreeAddr(t)}})
			requireCleanFailure(t, c, c.Wait(t, 10*time.Second), "tolerance "+tolerance)
		})
	}
}

// bulkSummary matches the line "N SET <message>" prints.
var bulkSummary = regexp.MustCompile(`^bulk SET ids -?\d+\.\.-?\d+: (\d+) ops in (\d+\.\d{3}) s, (\d+) ops/s, avg RTT (\d+\.\d{2}) ms, p99 RTT (\d+\.\d{2}) ms$`)

// checkBulkSummary checks a bulk summary line for count operations.
func checkBulkSummary(t *testing.T, line string, count int) {
	t.Helper()
	m := bulkSummary.FindStringSubmatch(line)
	if m == nil {
		t.Errorf("bulk summary %q does not match %s", line, bulkSummary)
		return
	}
	if m[1] != strconv.Itoa(count) {
		t.Errorf("bulk summary counts %s ops, want %d: %q", m[1], count, line)
	}
	seconds, _ := strconv.ParseFloat(m[2], 64)
	opsPerSecond, _ := strconv.ParseFloat(m[3], 64)
	avg, _ := strconv.ParseFloat(m[4], 64)
	p99, _ := strconv.ParseFloat(m[5], 64)
	if opsPerSecond <= 0 {
		t.Errorf("bulk summary ops/s %v, want > 0: %q", opsPerSecond, line)
	}
	if seconds > 0.01 {
		// ops/s is count/seconds; allow for the rounding of both.
		if want := float64(count) / seconds; opsPerSecond < want*0.8 || opsPerSecond > want*1.25 {
			t.Errorf("bulk summary ops/s %v inconsistent with %d ops in %v s: %q", opsPerSecond, count, seconds, line)
		}
	}
	if avg <= 0 || p99+0.01 < avg {
		t.Errorf("bulk summary RTTs avg %v ms, p99 %v ms: want 0 < avg <= p99: %q", avg, p99, line)
	}
}

// runClient runs "tolerex client" with stdin and returns its stdout lines.
func runClient(t *testing.T, addr, stdin string, extra ...string) []string {
	t.Helper()
	c := StartChild(t, bin, ChildOptions{Args: append([]string{"client", "--addr", addr}, extra...), Stdin: stdin})
	if code := c.Wait(t, 30*time.Second); code != 0 {
		t.Fatalf("tolerex client exited %d, want 0\n%s", code, c.Output())
	}
	if c.Stderr() != "" {
		t.Errorf("tolerex client wrote to stderr\n%s", c.Output())
	}
	return strings.Split(strings.TrimRight(c.Stdout(), "\n"), "\n")
}

// checkClientSession runs the documented client session against c's
// gateway: single commands, a bulk SET with the default offset (which
// starts past the id the session SET by hand), QUIT.
func checkClientSession(t *testing.T, c *Cluster) {
	lines := runClient(t, c.ClientAddr, "SET 1 hello\nGET 1\n5 SET msg\nGET 3\nGET 1\nGET 7\nQUIT\nGET 3\n")
	want := []string{"OK", "hello", "<bulk>", "msg_3", "hello", "NOT_FOUND", "Bye"}
	if len(lines) != len(want) {
		t.Fatalf("client printed %d lines, want %d (nothing after QUIT):\n%s", len(lines), len(want), strings.Join(lines, "\n"))
	}
	for i, w := range want {
		if w == "<bulk>" {
			checkBulkSummary(t, lines[i], 5)
			if !strings.HasPrefix(lines[i], "bulk SET ids 2..6: ") {
				t.Errorf("bulk summary %q, want ids 2..6 (past id 1, SET by hand)", lines[i])
			}
			continue
		}
		if lines[i] != w {
			t.Errorf("line %d: %q, want %q\n%s", i+1, lines[i], w, strings.Join(lines, "\n"))
		}
	}
	// The bulk run stored msg_<id> under the ids 2..6 and nothing else;
	// id 1 keeps what the session SET by hand.
	cl := c.Dial(t)
	for id := int64(-1); id <= 7; id++ {
		v, found, err := cl.Get(id)
		if err != nil {
			t.Fatalf("GET %d: %v", id, err)
		}
		want := ""
		switch {
		case id == 1:
			want = "hello"
		case id >= 2 && id <= 6:
			want = fmt.Sprintf("msg_%d", id)
		}
		if found != (want != "") || string(v) != want {
			t.Errorf("GET %d = %q found=%v, want %q", id, v, found, want)
		}
	}
}

func TestCLIClientAndTree(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2})
	c.DumpLogsOnFailure(t)
	c.Start(t)

	t.Run("client session", func(t *testing.T) { checkClientSession(t, c) })

	t.Run("client offset and csv", func(t *testing.T) {
		dir := t.TempDir()
		csvArg := "--csv=" + filepath.Join(dir, "run-<id>.csv")
		lines := runClient(t, c.ClientAddr, "SET 7 x\nGET 7\nDEL 7\nGET 7\nPING\n3 SET b\n2 SET c\nQUIT\n",
			"--offset", "100", "--id", "alice", csvArg)
		want := []string{"OK", "x", "OK", "NOT_FOUND", "PONG", "<bulk3>", "<bulk2>", "Bye"}
		if len(lines) != len(want) {
			t.Fatalf("client printed %d lines, want %d:\n%s", len(lines), len(want), strings.Join(lines, "\n"))
		}
		for i, w := range want {
			switch w {
			case "<bulk3>":
				checkBulkSummary(t, lines[i], 3)
			case "<bulk2>":
				checkBulkSummary(t, lines[i], 2)
			default:
				if lines[i] != w {
					t.Errorf("line %d: %q, want %q", i+1, lines[i], w)
				}
			}
		}
		// The first bulk run took 100..102, the second 103..104.
		cl := c.Dial(t)
		for id := int64(99); id <= 105; id++ {
			v, found, err := cl.Get(id)
			if err != nil {
				t.Fatalf("GET %d: %v", id, err)
			}
			want := ""
			switch {
			case id >= 100 && id <= 102:
				want = fmt.Sprintf("b_%d", id)
			case id >= 103 && id <= 104:
				want = fmt.Sprintf("c_%d", id)
			}
			if found != (want != "") || string(v) != want {
				t.Errorf("GET %d = %q found=%v, want %q", id, v, found, want)
			}
		}

		// A second run appends to the same file without a second header.
		runClient(t, c.ClientAddr, "PING\n", "--id", "alice", csvArg)
		path := filepath.Join(dir, "run-alice.csv")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("CSV file with <id> replaced: %v", err)
		}
		records, err := csv.NewReader(strings.NewReader(string(data))).ReadAll()
		if err != nil {
			t.Fatalf("parse %s: %v\n%s", path, err, data)
		}
		wantRows := [][]string{
			{"Timestamp", "ClientID", "Operation", "Count", "Bytes", "RTT_us", "Status"},
			{"*", "alice", "SET", "1", "1", "*", "OK"},
			{"*", "alice", "GET", "1", "0", "*", "OK"},
			{"*", "alice", "DEL", "1", "0", "*", "OK"},
			{"*", "alice", "GET", "1", "0", "*", "NOT_FOUND"},
			{"*", "alice", "PING", "1", "0", "*", "OK"},
			{"*", "alice", "BULK_SET", "3", "15", "*", "OK"},
			{"*", "alice", "BULK_SET", "2", "10", "*", "OK"},
			{"*", "alice", "PING", "1", "0", "*", "OK"},
		}
		if len(records) != len(wantRows) {
			t.Fatalf("%s has %d rows, want %d:\n%s", path, len(records), len(wantRows), data)
		}
		var previous time.Time
		for i, row := range records {
			for j, w := range wantRows[i] {
				if w != "*" && row[j] != w {
					t.Errorf("row %d column %s: %q, want %q\n%s", i, wantRows[0][j], row[j], w, data)
				}
			}
			if i == 0 {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, row[0])
			if err != nil {
				t.Errorf("row %d timestamp %q: %v", i, row[0], err)
			} else if at.Before(previous) || time.Since(at) > time.Minute || time.Until(at) > time.Second {
				t.Errorf("row %d timestamp %s out of order or not recent", i, at)
			} else {
				previous = at
			}
			if rtt, err := strconv.ParseInt(row[5], 10, 64); err != nil || rtt < 0 || rtt > 30_000_000 {
				t.Errorf("row %d RTT_us %q: want a plausible number of microseconds", i, row[5])
			}
		}
	})

	t.Run("tree", func(t *testing.T) {
		st := c.Status(t)
		tc, code := RunChild(t, bin, ChildOptions{Args: []string{"tree", "--admin-addr", c.Gateway.AdminAddr}}, 20*time.Second)
		if code != 0 {
			t.Fatalf("tolerex tree failed\n%s", tc.Output())
		}
		blocks := strings.Split(strings.TrimSpace(tc.Stdout()), "\n\n")
		if len(blocks) != 1+len(c.Members) {
			t.Fatalf("tree shows %d nodes, want %d\n%s", len(blocks), 1+len(c.Members), tc.Stdout())
		}
		actorLine := regexp.MustCompile(`^\s*(?:[├└]─ )?(\S+)\s+(\S+)\s+restarts=(\d+)\s+mailbox=(\d+)$`)
		actorsOf := func(block string) (string, map[string]string) {
			lines := strings.Split(block, "\n")
			actors := map[string]string{}
			for _, line := range lines[1:] {
				m := actorLine.FindStringSubmatch(line)
				if m == nil {
					t.Errorf("tree line %q lacks id, kind, restarts= and mailbox=", line)
					continue
				}
				actors[m[1]] = m[2]
			}
			return lines[0], actors
		}
		title, actors := actorsOf(blocks[0])
		if want := "gateway  " + c.Gateway.NodeAddr + "  (Raft LEADER, term "; !strings.HasPrefix(title, want) {
			t.Errorf("first node title %q, want it to start %q", title, want)
		}
		for id, kind := range map[string]string{"leader": "leader", "leader/selector": "selector",
			"membership": "membership", "gateway": "gateway", "consensus": "consensus"} {
			if actors[id] != kind {
				t.Errorf("gateway tree: actor %s has kind %q, want %q\n%s", id, actors[id], kind, blocks[0])
			}
		}
		seen := map[string]bool{}
		for _, block := range blocks[1:] {
			title, actors := actorsOf(block)
			for _, m := range st.Members {
				if title == "member "+m.ID+"  "+m.NodeAddress {
					seen[m.ID] = true
				}
			}
			if actors["member"] != "member" || actors["member/storage"] != "storage" {
				t.Errorf("member tree lacks member and member/storage:\n%s", block)
			}
		}
		if len(seen) != len(st.Members) {
			t.Errorf("tree titles name %d of the %d members\n%s", len(seen), len(st.Members), tc.Stdout())
		}
	})

	t.Run("tree json", func(t *testing.T) {
		tc, code := RunChild(t, bin, ChildOptions{Args: []string{"tree", "--admin-addr", c.Gateway.AdminAddr, "--json"}}, 20*time.Second)
		if code != 0 {
			t.Fatalf("tolerex tree --json failed\n%s", tc.Output())
		}
		if !json.Valid([]byte(tc.Stdout())) {
			t.Fatalf("tolerex tree --json printed invalid JSON:\n%s", tc.Stdout())
		}
		var view tree.ClusterView
		dec := json.NewDecoder(strings.NewReader(tc.Stdout()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&view); err != nil {
			t.Fatalf("decode tree JSON: %v\n%s", err, tc.Stdout())
		}
		if len(view.Nodes) != 1+len(c.Members) {
			t.Fatalf("%d nodes, want %d", len(view.Nodes), 1+len(c.Members))
		}
		if view.Nodes[0].Role != "gateway" {
			t.Errorf("first node role %q, want gateway", view.Nodes[0].Role)
		}
		for _, n := range view.Nodes[1:] {
			if n.Role != "member" || !n.Reachable || n.MemberID == "" || findActor(n.Actors, "member/storage") == nil {
				t.Errorf("member node %+v: want a reachable member with member/storage", n)
			}
		}
	})

	t.Run("tree of a dead address", func(t *testing.T) {
		tc, code := RunChild(t, bin, ChildOptions{Args: []string{"tree", "--admin-addr", FreeAddr(t)}}, 20*time.Second)
		requireCleanFailure(t, tc, code, "/api/tree")
	})
}

// findActor finds the actor id anywhere in actors.
func findActor(actors []tree.ActorView, id string) *tree.ActorView {
	for i := range actors {
		if actors[i].ID == id {
			return &actors[i]
		}
		if a := findActor(actors[i].Children, id); a != nil {
			return a
		}
	}
	return nil
}

func TestCLIClientNoPrompt(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 2, Tolerance: 2, NoPrompt: true})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	checkClientSession(t, c)
}

// devPorts picks node and admin port blocks for "tolerex dev" that do not
// overlap.
func devPorts(t *testing.T, members int) (nodePort, adminPort int) {
	for {
		nodePort, adminPort = FreePortBlock(t, members+1), FreePortBlock(t, members+1)
		if adminPort > nodePort+members || nodePort > adminPort+members {
			return nodePort, adminPort
		}
	}
}

func TestCLIDev(t *testing.T) {
	const members = 3
	nodePort, adminPort := devPorts(t, members)
	clientAddr := FreeAddr(t)
	dataDir := t.TempDir()
	dev := StartChild(t, bin, ChildOptions{Args: []string{"dev", "--gateways", "1", "--data-dir", dataDir, "--members", strconv.Itoa(members),
		"--client-addr", clientAddr, "--node-port", strconv.Itoa(nodePort), "--admin-port", strconv.Itoa(adminPort)}})
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range []string{"gateway", "member-1", "member-2", "member-3"} {
				data, _ := os.ReadFile(filepath.Join(dataDir, "logs", name+".log"))
				if len(data) > 3000 {
					data = data[len(data)-3000:]
				}
				t.Logf("---- dev %s log tail ----\n%s", name, data)
			}
		}
	})
	dev.WaitStdout(t, regexp.MustCompile(`cluster ready`), 45*time.Second)

	startedLine := regexp.MustCompile(`(?m)^\S+ (gateway|member-\d+)\s+(?:started|restarted \(restart #\d+\)) pid=(\d+) `)
	pidsIn := func(out string) map[int]string {
		pids := map[int]string{}
		for _, m := range startedLine.FindAllStringSubmatch(out, -1) {
			pid, _ := strconv.Atoi(m[2])
			pids[pid] = m[1]
		}
		return pids
	}
	if got := len(pidsIn(dev.Stdout())); got != 1+members {
		t.Fatalf("dev reported %d started processes, want %d\n%s", got, 1+members, dev.Output())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, clientAddr, client.Options{DialTimeout: 5 * time.Second, IOTimeout: 20 * time.Second})
	if err != nil {
		t.Fatalf("dial dev gateway %s: %v", clientAddr, err)
	}
	defer cl.Close()
	gw := AdminView("gateway", net.JoinHostPort("127.0.0.1", strconv.Itoa(adminPort)))
	// "cluster ready" promises a cluster that takes writes right away.
	var st leader.ClusterStatus
	gw.GetJSON(t, "/api/cluster", &st)
	if err := cl.Set(-1, []byte("first write")); err != nil || st.LiveCount != members {
		t.Errorf("right after \"cluster ready\" the gateway sees %d of %d members live and the first SET answers %v", st.LiveCount, members, err)
	}
	waitDevLive := func(when string) {
		t.Helper()
		Eventually(t, 20*time.Second, when+": the dev gateway to see every member live", func() (bool, string) {
			var st leader.ClusterStatus
			gw.GetJSON(t, "/api/cluster", &st)
			return st.LiveCount == members, fmt.Sprintf("%d live members, want %d: %+v", st.LiveCount, members, st.Members)
		})
	}
	waitDevLive("after start")
	// Every process shares the machine: dev gives each --max-procs, half
	// the cores (at least 1), and each runs with it.
	wantProcs := float64(max(1, runtime.NumCPU()/2))
	for i := 0; i <= members; i++ {
		p := gw
		if i > 0 {
			p = AdminView(fmt.Sprintf("member-%d", i), net.JoinHostPort("127.0.0.1", strconv.Itoa(adminPort+i)))
		}
		if got := processGauge(t, p, "go_sched_gomaxprocs_threads"); got != wantProcs {
			t.Errorf("%s runs with GOMAXPROCS %v, want %v (dev's default --max-procs)", p.Name, got, wantProcs)
		}
	}
	const messages = 30
	for id := range int64(messages) {
		if err := cl.Set(id, []byte(fmt.Sprintf("dev message %d", id))); err != nil {
			t.Fatalf("SET %d: %v", id, err)
		}
	}
	readAll := func(when string) {
		t.Helper()
		for id := range int64(messages) {
			v, found, err := cl.Get(id)
			if err != nil || !found || string(v) != fmt.Sprintf("dev message %d", id) {
				t.Fatalf("%s: GET %d = %q found=%v err=%v", when, id, v, found, err)
			}
		}
	}
	readAll("before the kill")

	m := dev.WaitStdout(t, regexp.MustCompile(`member-2  started pid=(\d+) `), time.Second)
	pid, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill member-2 (pid %d): %v", pid, err)
	}
	dev.WaitStdout(t, regexp.MustCompile(`member-2 exited \([^)]*killed[^)]*\)`), 10*time.Second)
	readAll("while member-2 restarts") // tolerance 2: every message has another copy
	restarted := dev.WaitStdout(t, regexp.MustCompile(`member-2  restarted \(restart #1\) pid=(\d+) `), 15*time.Second)
	if restarted[1] == m[1] {
		t.Errorf("restarted member-2 has the killed pid %s", m[1])
	}
	AdminView("member-2", net.JoinHostPort("127.0.0.1", strconv.Itoa(adminPort+2))).WaitReady(t, 20*time.Second)
	waitDevLive("after member-2 restarted")
	readAll("after member-2 restarted")
	cl.Close()

	pids := pidsIn(dev.Stdout())
	if len(pids) != 2+members {
		t.Errorf("dev reported %d process starts, want %d\n%s", len(pids), 2+members, dev.Stdout())
	}
	if err := dev.Signal(os.Interrupt); err != nil {
		t.Fatalf("SIGINT dev: %v", err)
	}
	if code := dev.Wait(t, 15*time.Second); code != 0 {
		t.Errorf("dev exited %d after SIGINT, want 0\n%s", code, dev.Output())
	}
	if !strings.Contains(dev.Stdout(), "all processes stopped") {
		t.Errorf("dev did not report that all processes stopped\n%s", dev.Stdout())
	}
	for pid, name := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still exists after dev exited: kill(pid, 0) = %v", name, pid, err)
		}
	}
}

func TestCLIStartupErrors(t *testing.T) {
	t.Run("gateway without tls", func(t *testing.T) {
		c, code := RunChild(t, bin, ChildOptions{Args: []string{"gateway", "--data-dir", t.TempDir(),
			"--node-addr", FreeAddr(t), "--admin-addr", FreeAddr(t), "--client-addr", FreeAddr(t)}}, 10*time.Second)
		requireCleanFailure(t, c, code, "tolerex certs", "--insecure")
	})
	t.Run("member without data dir", func(t *testing.T) {
		c, code := RunChild(t, bin, ChildOptions{Args: []string{"member", "--insecure",
			"--node-addr", FreeAddr(t), "--admin-addr", FreeAddr(t)}}, 10*time.Second)
		requireCleanFailure(t, c, code, "--data-dir")
	})
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := busy.Addr().String()
	for _, tc := range []struct{ role, flag string }{
		{"gateway", "--client-addr"}, {"gateway", "--node-addr"}, {"gateway", "--admin-addr"},
		{"member", "--node-addr"}, {"member", "--admin-addr"},
	} {
		t.Run(tc.role+" "+tc.flag+" in use", func(t *testing.T) {
			args := []string{tc.role, "--insecure", "--data-dir", t.TempDir(),
				"--node-addr", FreeAddr(t), "--admin-addr", FreeAddr(t)}
			if tc.role == "gateway" {
				args = append(args, "--client-addr", FreeAddr(t))
			}
			c, code := RunChild(t, bin, ChildOptions{Args: append(args, tc.flag, taken)}, 10*time.Second)
			requireCleanFailure(t, c, code, taken, "address already in use")
		})
	}
}
