package metalog

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/tolerex/tolerex/storage/internal/crashtest"
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
	var lastEntry, lastSnapshot uint64
	var entries int
	crashtest.KillAfter(t, crashDirEnv, dir, func(line string) (bool, error) {
		var kind string
		var seq uint64
		if _, err := fmt.Sscanf(line, "%s %d\n", &kind, &seq); err != nil {
			return false, err
		}
		switch kind {
		case "e":
			if seq != lastEntry+1 {
				return false, fmt.Errorf("entry %d reported after %d", seq, lastEntry)
			}
			lastEntry = seq
			entries++
		case "s":
			lastSnapshot = max(lastSnapshot, seq)
		default:
			return false, fmt.Errorf("unknown report kind %q", kind)
		}
		return entries >= 400 && lastSnapshot > 0, nil
	})

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
