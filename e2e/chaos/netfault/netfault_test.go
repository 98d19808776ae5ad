package netfault

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tolerex/tolerex/cluster/local/poll"
)

// helperEnv makes the test binary run as a helper process: an echo server
// on a port that also dials other helpers on command.
const helperEnv = "TOLEREX_NETFAULT_HELPER_PORT"

func TestMain(m *testing.M) {
	if port := os.Getenv(helperEnv); port != "" {
		if err := runHelper(port, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runHelper echoes every line received on port and obeys commands on in:
// "dial PORT" opens a connection (answers "ok N" or "err ..."), "ping N
// SEQ" sends SEQ on connection N and waits a second for its echo (answers
// "ok" or "timeout").
func runHelper(port string, in io.Reader, out io.Writer) error {
	l, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	fmt.Fprintln(out, "listening")
	type conn struct {
		c net.Conn
		r *bufio.Reader
	}
	var conns []conn
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "dial":
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+f[1], time.Second)
			if err != nil {
				fmt.Fprintln(out, "err", err)
				continue
			}
			conns = append(conns, conn{c: c, r: bufio.NewReader(c)})
			fmt.Fprintln(out, "ok", len(conns)-1)
		case len(f) == 3 && f[0] == "ping":
			n, _ := strconv.Atoi(f[1])
			c := conns[n]
			_ = c.c.SetDeadline(time.Now().Add(time.Second))
			answer := "timeout"
			if _, err := c.c.Write([]byte(f[2] + "\n")); err == nil {
				// Skip echoes of earlier pings that timed out.
				for {
					line, err := c.r.ReadString('\n')
					if err != nil {
						break
					}
					if strings.TrimSpace(line) == f[2] {
						answer = "ok"
						break
					}
				}
			}
			fmt.Fprintln(out, answer)
		default:
			fmt.Fprintln(out, "err bad command", sc.Text())
		}
	}
	return nil
}

// helper is a running helper process.
type helper struct {
	name  string
	port  int
	gid   uint32
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func startHelper(t *testing.T, name string, port int, gid uint32) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: 0, Gid: gid},
		Pdeathsig:  syscall.SIGKILL,
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{name: name, port: port, gid: gid, cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if got := h.read(t); got != "listening" {
		t.Fatalf("%s: %q", name, got)
	}
	return h
}

func (h *helper) read(t *testing.T) string {
	t.Helper()
	if !h.out.Scan() {
		t.Fatalf("%s: no answer: %v", h.name, h.out.Err())
	}
	return h.out.Text()
}

func (h *helper) do(t *testing.T, format string, args ...any) string {
	t.Helper()
	if _, err := fmt.Fprintf(h.stdin, format+"\n", args...); err != nil {
		t.Fatal(err)
	}
	return h.read(t)
}

// dial opens a connection from h to other and returns its number, or -1
// if it failed.
func (h *helper) dial(t *testing.T, other *helper) int {
	t.Helper()
	got := h.do(t, "dial %d", other.port)
	if !strings.HasPrefix(got, "ok ") {
		return -1
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(got, "ok "))
	return n
}

// ping reports whether connection n of h carries a round trip.
func (h *helper) ping(t *testing.T, n, seq int) bool {
	t.Helper()
	return h.do(t, "ping %d %d", n, seq) == "ok"
}

// freePort returns a free port below Linux's ephemeral range.
func freePort(t *testing.T, taken ...int) int {
	t.Helper()
	for i := range 500 {
		port := 20000 + (os.Getpid()*7+i*131)%12000
		if slices.Contains(taken, port) {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// TestCutAndHeal checks that a cut stops new and open connections between
// two processes in both directions, leaves everyone else alone, and that
// healing it lets the stalled connections carry traffic again.
func TestCutAndHeal(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	gidBase := uint32(200000 + os.Getpid()%100000*8)
	portA := freePort(t)
	portB := freePort(t, portA)
	portC := freePort(t, portA, portB)
	p, err := New([]Endpoint{
		{Name: "a", GID: gidBase + 1, Ports: []int{portA}},
		{Name: "b", GID: gidBase + 2, Ports: []int{portB}},
		{Name: "c", GID: gidBase + 3, Ports: []int{portC}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
		if chainExists(p.Chain()) || chainExists(p.Chain()+"-CUT") {
			t.Error("chains left after Close")
		}
	})
	a := startHelper(t, "a", portA, gidBase+1)
	b := startHelper(t, "b", portB, gidBase+2)
	c := startHelper(t, "c", portC, gidBase+3)

	// Connections opened before the cut, both ways.
	ab, ba := a.dial(t, b), b.dial(t, a)
	if ab < 0 || ba < 0 || !a.ping(t, ab, 1) || !b.ping(t, ba, 2) {
		t.Fatal("a and b cannot talk before any cut")
	}

	id, err := p.Cut([]string{"a"}, []string{"b"})
	if err != nil {
		t.Fatal(err)
	}
	if a.ping(t, ab, 3) {
		t.Error("a's open connection to b still carries traffic")
	}
	if b.ping(t, ba, 4) {
		t.Error("b's open connection to a still carries traffic")
	}
	if a.dial(t, b) >= 0 {
		t.Error("a opened a new connection to b")
	}
	if b.dial(t, a) >= 0 {
		t.Error("b opened a new connection to a")
	}
	// Others are not affected: c talks to both, and so does this process.
	for _, pair := range [][2]*helper{{c, a}, {c, b}, {a, c}, {b, c}} {
		if n := pair[0].dial(t, pair[1]); n < 0 || !pair[0].ping(t, n, 5) {
			t.Errorf("%s cannot talk to %s during the a|b cut", pair[0].name, pair[1].name)
		}
	}
	for _, h := range []*helper{a, b} {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(h.port), time.Second)
		if err != nil {
			t.Errorf("this process cannot reach %s during the cut: %v", h.name, err)
		} else {
			conn.Close()
		}
	}

	if err := p.Heal(id); err != nil {
		t.Fatal(err)
	}
	if p.Cuts() != 0 {
		t.Errorf("%d cuts after heal", p.Cuts())
	}
	// The stalled connections recover once TCP retransmits.
	seq := 100
	err = poll.Until(context.Background(), 15*time.Second, 100*time.Millisecond, "open connections carry traffic after heal", func() (bool, error) {
		seq++
		return a.ping(t, ab, seq) && b.ping(t, ba, seq), nil
	})
	if err != nil {
		t.Error(err)
	}
	if n := a.dial(t, b); n < 0 || !a.ping(t, n, 6) {
		t.Error("a cannot open a connection to b after heal")
	}

	// Overlapping cuts: healing one keeps the other.
	id1, err := p.Cut([]string{"a"}, []string{"b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	id2, err := p.Cut([]string{"a"}, []string{"b"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Heal(id1); err != nil {
		t.Fatal(err)
	}
	if a.dial(t, b) >= 0 {
		t.Error("a reached b while the second cut holds")
	}
	if n := a.dial(t, c); n < 0 {
		t.Error("a cannot reach c after its cut healed")
	}
	if err := p.Heal(id2); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Cut([]string{"a"}, []string{"a"}); err == nil {
		t.Error("cut of a from itself accepted")
	}
	if _, err := p.Cut([]string{"a"}, []string{"nobody"}); err == nil {
		t.Error("cut to an unknown endpoint accepted")
	}
	if err := p.Heal(id2); err == nil {
		t.Error("healing a healed cut succeeded")
	}
}

func TestNewRejectsBadEndpoints(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	for _, eps := range [][]Endpoint{
		{{Name: "a", GID: 0}},
		{{Name: "a", GID: 300001}, {Name: "b", GID: 300001}},
		{{Name: "a", GID: 300001}, {Name: "a", GID: 300002}},
	} {
		if p, err := New(eps); err == nil {
			p.Close()
			t.Errorf("New(%+v) succeeded", eps)
		}
	}
}

func TestStaleChains(t *testing.T) {
	listing := strings.Join([]string{
		"-P OUTPUT ACCEPT",
		"-N DOCKER",
		"-N TOLEREX-CHAOS-100",
		"-N TOLEREX-CHAOS-100-CUT",
		"-N TOLEREX-CHAOS-200",
		"-N TOLEREX-CHAOS-200-CUT",
		"-N TOLEREX-CHAOS-x",
		"-A OUTPUT -j TOLEREX-CHAOS-100",
	}, "\n")
	got := staleChains(listing, func(pid int) bool { return pid == 200 })
	if !slices.Equal(got, []string{"TOLEREX-CHAOS-100"}) {
		t.Errorf("stale chains %v, want [TOLEREX-CHAOS-100]", got)
	}
}

// TestCleanStale leaves chains as a crashed run would and checks that
// CleanStale removes them, jump from OUTPUT included.
func TestCleanStale(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	// A pid that is not running: the largest possible is never reached
	// in practice, but check.
	pid := 4194000
	for alive(pid) {
		pid--
	}
	chain := ChainPrefix + strconv.Itoa(pid)
	for _, args := range [][]string{{"-N", chain}, {"-N", chain + "-CUT"}, {"-A", chain, "-j", chain + "-CUT"}, {"-A", "OUTPUT", "-j", chain}} {
		if err := iptables(args...); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = removeChains(chain) })
	removed, err := CleanStale()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, chain) {
		t.Errorf("removed %v, want %s among them", removed, chain)
	}
	if chainExists(chain) || chainExists(chain+"-CUT") {
		t.Error("stale chains still exist")
	}
	if out, _ := iptablesOutput("-S", "OUTPUT"); strings.Contains(out, chain) {
		t.Errorf("OUTPUT still jumps to %s:\n%s", chain, out)
	}
}
