package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tolerex/tolerex/cluster/local"
	"github.com/tolerex/tolerex/cluster/local/poll"
)

// ChildOptions say how StartChild runs a tolerex command.
type ChildOptions struct {
	// Args are the command line after the binary: "gateway", "--insecure"...
	Args []string
	// Dir is the working directory; empty means the test's.
	Dir string
	// Env is added to the test's environment, from which every TOLEREX_*
	// variable (and GOGC) is removed first so that only Env sets flags.
	Env []string
	// Stdin is written to the command's standard input, which is then
	// closed.
	Stdin string
}

// Child is a tolerex command a test runs itself (rather than through a
// Cluster): its stdout and stderr are kept in memory as they arrive.
type Child struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error // Wait's result; read only after done is closed
}

// StartChild starts bin with opts. The process gets SIGKILL if the test
// process dies, and is killed when the test ends if it still runs.
func StartChild(t testing.TB, bin string, opts ChildOptions) *Child {
	t.Helper()
	cmd := exec.Command(bin, opts.Args...)
	cmd.Dir = opts.Dir
	cmd.Env = append(environWithoutTolerex(), opts.Env...)
	cmd.Stdin = strings.NewReader(opts.Stdin)
	c := &Child{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.stdout, c.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s %s: %v", bin, strings.Join(opts.Args, " "), err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
	})
	return c
}

// RunChild runs bin with opts to its end and returns it with its exit
// code; it fails the test if that takes longer than limit.
func RunChild(t testing.TB, bin string, opts ChildOptions, limit time.Duration) (*Child, int) {
	t.Helper()
	c := StartChild(t, bin, opts)
	return c, c.Wait(t, limit)
}

// environWithoutTolerex is the test's environment without the variables
// that would set a child's flags: TOLEREX_* and GOGC (which overrides
// --gc-percent).
func environWithoutTolerex() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOLEREX_") && !strings.HasPrefix(kv, "GOGC=") {
			env = append(env, kv)
		}
	}
	return env
}

// Pid is the process id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Signal sends sig to the process.
func (c *Child) Signal(sig os.Signal) error { return c.cmd.Process.Signal(sig) }

// Stdout is everything the process wrote to stdout so far.
func (c *Child) Stdout() string { return c.stdout.String() }

// Stderr is everything the process wrote to stderr so far.
func (c *Child) Stderr() string { return c.stderr.String() }

// Output is stdout and stderr, labelled, for failure messages.
func (c *Child) Output() string {
	return fmt.Sprintf("--- stdout ---\n%s\n--- stderr ---\n%s", c.Stdout(), c.Stderr())
}

// Exited reports whether the process has ended, and its exit code (-1 when
// a signal ended it).
func (c *Child) Exited() (exited bool, code int) {
	select {
	case <-c.done:
		return true, c.cmd.ProcessState.ExitCode()
	default:
		return false, 0
	}
}

// Wait waits up to limit for the process to end and returns its exit code
// (-1 when a signal ended it). On timeout it kills the process and fails
// the test.
func (c *Child) Wait(t testing.TB, limit time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(limit):
		_ = c.cmd.Process.Kill()
		<-c.done
		t.Fatalf("%s did not exit within %s\n%s", strings.Join(c.cmd.Args, " "), limit, c.Output())
	}
	var exitErr *exec.ExitError
	if c.err != nil && !errors.As(c.err, &exitErr) {
		t.Fatalf("wait for %s: %v", strings.Join(c.cmd.Args, " "), c.err)
	}
	return c.cmd.ProcessState.ExitCode()
}

// WaitStdout waits up to limit for stdout to match re and returns the
// submatches of its first match. It fails the test on timeout or if the
// process ends without printing a match.
func (c *Child) WaitStdout(t testing.TB, re *regexp.Regexp, limit time.Duration) []string {
	t.Helper()
	var m []string
	err := poll.Until(context.Background(), limit, pollInterval, fmt.Sprintf("%q on stdout", re), func() (bool, error) {
		exited, code := c.Exited() // before reading: what it printed before it exited is all there
		if m = re.FindStringSubmatch(c.Stdout()); m != nil {
			return true, nil
		}
		if exited {
			return false, poll.Abort(fmt.Errorf("process exited (code %d) first", code))
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, c.Output())
	}
	return m
}

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// FreePortBlock returns the first of n consecutive 127.0.0.1 ports that
// were all free a moment ago, below the kernel's ephemeral range (so port-0
// listeners of other tests do not take them) and never handed out before.
func FreePortBlock(t testing.TB, n int) int {
	t.Helper()
	base, err := ports.Block(n)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// ParseMetrics parses a Prometheus text exposition (a /metrics body).
func ParseMetrics(t testing.TB, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse metrics: %v\n%s", err, body)
	}
	return families
}

// MetricsOf fetches and parses p's /metrics.
func MetricsOf(t testing.TB, p *Process) map[string]*dto.MetricFamily {
	t.Helper()
	body, status := p.Get(t, "/metrics")
	if status != 200 {
		t.Fatalf("GET /metrics on %s: %d %s", p.Name, status, body)
	}
	return ParseMetrics(t, body)
}

// MetricWithLabels returns the metric of family whose labels include every
// name=value of labels (nil when there is none).
func MetricWithLabels(family *dto.MetricFamily, labels map[string]string) *dto.Metric {
	if family == nil {
		return nil
	}
	for _, m := range family.GetMetric() {
		matched := 0
		for _, pair := range m.GetLabel() {
			if want, ok := labels[pair.GetName()]; ok && want == pair.GetValue() {
				matched++
			}
		}
		if matched == len(labels) {
			return m
		}
	}
	return nil
}

// MetricLabel returns the value of m's label name ("" when absent).
func MetricLabel(m *dto.Metric, name string) string {
	for _, pair := range m.GetLabel() {
		if pair.GetName() == name {
			return pair.GetValue()
		}
	}
	return ""
}

// WaitReady waits up to limit for adminAddr's /readyz to answer 200 and
// fails the test if the process exits first or the time runs out.
func (c *Child) WaitReady(t testing.TB, adminAddr string, limit time.Duration) {
	t.Helper()
	view := AdminView("child", adminAddr)
	err := poll.Until(context.Background(), limit, pollInterval, "ready on "+adminAddr, func() (bool, error) {
		if exited, code := c.Exited(); exited {
			return false, poll.Abort(fmt.Errorf("exited (code %d) before it was ready", code))
		}
		return view.Ready(), nil
	})
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(c.cmd.Args, " "), err, c.Output())
	}
}

// AdminView is a Process value for a process the harness did not start:
// its admin HTTP methods (Get, GetJSON, Ready) work, nothing else does.
func AdminView(name, adminAddr string) *Process {
	return &Process{Name: name, AdminAddr: adminAddr, node: &local.Node{Name: name, AdminAddr: adminAddr, HTTP: httpClient}}
}
