package metalog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crashDirEnv tells a re-executed test binary to act as the crash-test child
// writing into the named directory.
const crashDirEnv = "TOLEREX_METALOG_CRASH_CHILD_DIR"

// Crash child parameters: a snapshot every crashSnapshotEvery entries, taken
// crashSnapshotLag entries behind, of crashSnapshotBytes (two chunks).
const (
	crashSnapshotEvery = 100
	crashSnapshotLag   = 30
	crashSnapshotBytes = ChunkBytes + ChunkBytes/4
)

// TestHelperProcess is not a test: it is the body of the child process that
// TestCrashKeepsCommittedEntries starts and kills. Without the environment
// variable it returns at once.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		return
	}
	runCrashChild(dir)
}

// runCrashChild appends entryData(seq) with Sync set, snapshots now and then,
// and prints "e <seq>" for each committed entry and "s <seq>" for each written
// snapshot as soon as they are reported, until it is killed. It exits by
// itself after a minute in case the parent is gone.
func runCrashChild(dir string) {
	l, err := Open(dir, Options{
		Sync: true,
		OnCommit: func(committed []Committed) {
			var out bytes.Buffer
			for _, c := range committed {
				if c.Err != nil {
					fmt.Fprintf(os.Stderr, "child: append failed: %v\n", c.Err)
					os.Exit(3)
				}
				fmt.Fprintf(&out, "e %d\n", c.Seq)
			}
			if _, err := os.Stdout.Write(out.Bytes()); err != nil {
				os.Exit(4)
			}
		},
		OnSnapshot: func(seq uint64, err error) {
			if err != nil {
				fmt.Fprintf(os.Stderr, "child: snapshot failed: %v\n", err)
				os.Exit(3)
			}
			if _, err := fmt.Fprintf(os.Stdout, "s %d\n", seq); err != nil {
				os.Exit(4)
			}
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "child: %v\n", err)
		os.Exit(2)
	}
	go func() {
		// One appender, starting from an empty log: the i-th Append gets
		// seq i, so the data can be derived from the seq.
		for seq := uint64(1); ; seq++ {
			l.Append(entryData(seq), nil)
			if seq%crashSnapshotEvery == 0 {
				at := seq - crashSnapshotLag
				l.Snapshot(at, snapshotData(at, crashSnapshotBytes))
			}
		}
	}()
	time.Sleep(time.Minute)
	os.Exit(5)
}

// TestCrashKeepsCommittedEntries runs a child process that appends and
// snapshots with Sync set, kills it with SIGKILL once it has reported a few
// hundred entries and at least one snapshot, and checks that Load returns a
// snapshot at least as new as the newest reported one and every reported
// entry after it, intact.
func TestCrashKeepsCommittedEntries(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	type report struct {
		kind string
		seq  uint64
	}
	reports := make(chan report, 1<<16)
	readDone := make(chan error, 1)
	go func() {
		r := bufio.NewReader(stdout)
		defer close(reports)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				// A line without its newline was cut by the kill and is
				// ignored.
				if errors.Is(err, io.EOF) {
					err = nil
				}
				readDone <- err
				return
			}
			var rep report
			if _, err := fmt.Sscanf(line, "%s %d\n", &rep.kind, &rep.seq); err != nil || (rep.kind != "e" && rep.kind != "s") {
				readDone <- fmt.Errorf("unexpected child output %q: %v", line, err)
				return
			}
			reports <- rep
		}
	}()

	var lastEntry, lastSnapshot uint64
	var entries int
	take := func(rep report) {
		switch rep.kind {
		case "e":
			if rep.seq != lastEntry+1 {
				t.Fatalf("child reported entry %d after %d", rep.seq, lastEntry)
			}
			lastEntry = rep.seq
			entries++
		case "s":
			lastSnapshot = max(lastSnapshot, rep.seq)
		}
	}
	deadline := time.After(30 * time.Second)
	for entries < 400 || lastSnapshot == 0 {
		select {
		case rep, ok := <-reports:
			if !ok {
				_ = cmd.Wait()
				t.Fatalf("child stopped after %d entries: %v\nstderr:\n%s", entries, <-readDone, stderr.String())
			}
			take(rep)
		case <-deadline:
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("only %d entries and snapshot %d within 30s\nstderr:\n%s", entries, lastSnapshot, stderr.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for rep := range reports {
		take(rep)
	}
	if err := <-readDone; err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || !strings.Contains(exitErr.String(), "killed") {
		t.Fatalf("child ended with %v, want killed by SIGKILL\nstderr:\n%s", err, stderr.String())
	}

	l := openTestLog(t, dir, Options{Sync: true})
	got := mustLoad(t, l.Log)
	if !got.hasSnapshot || got.snapshotSeq < lastSnapshot {
		t.Fatalf("loaded snapshot %d, but snapshot %d was reported", got.snapshotSeq, lastSnapshot)
	}
	if !bytes.Equal(got.snapshot, snapshotData(got.snapshotSeq, crashSnapshotBytes)) {
		t.Fatalf("snapshot %d has the wrong content", got.snapshotSeq)
	}
	last := l.LastSeq()
	if last < lastEntry {
		t.Fatalf("log ends at %d, but entry %d was reported", last, lastEntry)
	}
	checkEntries(t, got, got.snapshotSeq+1, last)
	t.Logf("reported: %d entries up to %d, snapshot %d; recovered: snapshot %d, entries up to %d",
		entries, lastEntry, lastSnapshot, got.snapshotSeq, last)
}
