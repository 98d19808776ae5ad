// Package crashtest kills a writer mid-flight for the storage packages'
// crash tests: it re-executes the running test binary as a child that
// writes and reports each acknowledged write on a line of its own, reads
// those lines until the test has seen enough, kills the child with
// SIGKILL, and hands over the lines it printed before dying too.
package crashtest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// HelperTest is the test the child runs; the package using KillAfter
// defines it and makes it write when the environment variable is set.
const HelperTest = "TestHelperProcess"

// KillAfter starts the child with env=dir in its environment and passes
// every complete line it prints to report. Once report says stop (or the
// child printed for 30 s without that), the child is killed with SIGKILL;
// lines it printed before dying are still passed to report, with their
// stop result ignored. A line cut by the kill was not reported as a whole
// and is dropped. It fails the test if report returns an error, if the
// child exits by itself, or if it does not die of the SIGKILL.
func KillAfter(t testing.TB, env, dir string, report func(line string) (stop bool, err error)) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+HelperTest+"$")
	cmd.Env = append(os.Environ(), env+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1<<16)
	readDone := make(chan error, 1)
	go func() {
		defer close(lines)
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				readDone <- err
				return
			}
			lines <- line
		}
	}()

	deadline := time.After(30 * time.Second)
	for stop := false; !stop; {
		select {
		case line, ok := <-lines:
			if !ok {
				_ = cmd.Wait()
				t.Fatalf("child stopped before the test had seen enough: %v\nstderr:\n%s", <-readDone, stderr.String())
			}
			if stop, err = report(line); err != nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("child output %q: %v", line, err)
			}
		case <-deadline:
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("the child did not report enough within 30s\nstderr:\n%s", stderr.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for line := range lines {
		if _, err := report(line); err != nil {
			t.Fatalf("child output %q: %v", line, err)
		}
	}
	if err := <-readDone; err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || !strings.Contains(exitErr.String(), "killed") {
		t.Fatalf("child ended with %v, want killed by SIGKILL\nstderr:\n%s", err, stderr.String())
	}
}
