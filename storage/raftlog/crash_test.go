package raftlog

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/tolerex/tolerex/storage/internal/crashtest"
)

// crashDirEnv tells a re-executed test binary to act as the crash-test child
// writing into the named directory.
const crashDirEnv = "TOLEREX_RAFTLOG_CRASH_CHILD_DIR"

// Crash child parameters: the generator's seed, the most requests queued
// and not yet reported (so that the parent knows how far past the last
// report the store may be), and the size of every fifth created snapshot
// (two chunks).
const (
	crashSeed          = 7
	crashInFlight      = 32
	crashLargeSnapshot = ChunkBytes + ChunkBytes/4
)

// TestHelperProcess is not a test: it is the body of the child process that
// TestCrashKeepsWhatWasReported starts and kills. Without the environment
// variable it returns at once.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		return
	}
	runCrashChild(dir)
}

// runCrashChild issues the generated requests with Sync set, at most
// crashInFlight at a time, and prints "w <n>" or "s <n>" for the n-th
// request (a Write or a CreateSnapshot) as soon as it is reported, until
// it is killed. Reports come from the committer in queue order. It exits
// by itself after a minute in case the parent is gone.
func runCrashChild(dir string) {
	inFlight := make(chan struct{}, crashInFlight)
	// snapshotOps holds the numbers of queued CreateSnapshots, which are
	// reported by index.
	snapshotOps := make(chan int, crashInFlight+1)
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "child: "+format+"\n", args...)
		os.Exit(3)
	}
	l, err := Open(dir, Options{
		Sync: true,
		OnWritten: func(written []Written) {
			var out bytes.Buffer
			for _, w := range written {
				if w.Err != nil {
					fail("write %v: %v", w.Token, w.Err)
				}
				fmt.Fprintf(&out, "w %d\n", w.Token.(int))
			}
			if _, err := os.Stdout.Write(out.Bytes()); err != nil {
				os.Exit(4)
			}
			for range written {
				<-inFlight
			}
		},
		OnSnapshot: func(index uint64, err error) {
			if err != nil {
				fail("snapshot %d: %v", index, err)
			}
			if _, err := fmt.Fprintf(os.Stdout, "s %d\n", <-snapshotOps); err != nil {
				os.Exit(4)
			}
			<-inFlight
		},
	})
	if err != nil {
		fail("%v", err)
	}
	go func() {
		g := newOpGen(crashSeed, crashLargeSnapshot)
		for n := 1; ; n++ {
			o := g.next()
			inFlight <- struct{}{}
			if o.snapshot != nil {
				snapshotOps <- n
			}
			o.issue(l, n)
		}
	}()
	<-time.After(time.Minute)
	os.Exit(5)
}

// TestCrashKeepsWhatWasReported runs a child that issues generated raft
// requests with Sync set and kills it with SIGKILL once it has reported
// several hundred, snapshots among them. The store must open cleanly and
// hold exactly the state after some request at or past the last reported
// one (and at most crashInFlight past it): everything reported is there,
// in order, and nothing torn.
func TestCrashKeepsWhatWasReported(t *testing.T) {
	dir := t.TempDir()
	var reported, snapshots int
	crashtest.KillAfter(t, crashDirEnv, dir, func(line string) (bool, error) {
		var kind string
		var n int
		if _, err := fmt.Sscanf(line, "%s %d\n", &kind, &n); err != nil {
			return false, err
		}
		if n != reported+1 {
			return false, fmt.Errorf("request %d reported after %d", n, reported)
		}
		reported = n
		switch kind {
		case "w":
		case "s":
			snapshots++
		default:
			return false, fmt.Errorf("unknown report kind %q", kind)
		}
		return reported >= 600 && snapshots >= 6, nil
	})

	l := openTestLog(t, dir, Options{Sync: true})
	g := newOpGen(crashSeed, crashLargeSnapshot)
	ref := raft.NewMemoryStorage()
	for range reported {
		g.next().applyTo(t, ref)
	}
	recovered := reported
	diff := storageDiff(l.Log, ref)
	firstDiff := diff
	for diff != "" && recovered < reported+crashInFlight {
		g.next().applyTo(t, ref)
		recovered++
		diff = storageDiff(l.Log, ref)
	}
	if diff != "" {
		t.Fatalf("the store matches the state after none of requests %d..%d; against request %d: %s",
			reported, recovered, reported, firstDiff)
	}
	st := l.Stats()
	t.Logf("reported %d requests (%d snapshots created) by kind %v; recovered the state after request %d: log [%d, %d], snapshot %d",
		reported, snapshots, g.counts, recovered, st.FirstIndex, st.LastIndex, st.SnapshotIndex)
}
