package storage

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
const crashDirEnv = "TOLEREX_STORAGE_CRASH_CHILD_DIR"

// crashPayload is the payload the crash child writes for (id, version); the
// parent recomputes it to check what survived.
func crashPayload(id int64, version uint64) []byte {
	head := fmt.Appendf(nil, "id=%d version=%d;", id, version)
	return append(head, bytes.Repeat([]byte{byte(id), byte(version)}, int(id%300))...)
}

// TestHelperProcess is not a test: it is the body of the child process that
// TestCrashKeepsAcknowledgedWrites starts and kills. Without the environment
// variable it returns at once.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		return
	}
	runCrashChild(dir)
}

// runCrashChild writes puts from several goroutines with Sync set and prints
// "ack <id> <version>" for each one as soon as it is acknowledged, until it
// is killed. It exits by itself after a minute in case the parent is gone.
func runCrashChild(dir string) {
	s, err := Open(dir, Options{Sync: true, OnCommit: func(results []Result) {
		var out bytes.Buffer
		for _, r := range results {
			if r.Err != nil {
				fmt.Fprintf(os.Stderr, "child: op failed: %v\n", r.Err)
				os.Exit(3)
			}
			op := r.Token.(Op)
			fmt.Fprintf(&out, "ack %d %d\n", op.ID, op.Version)
		}
		if _, err := os.Stdout.Write(out.Bytes()); err != nil {
			os.Exit(4)
		}
	}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "child: %v\n", err)
		os.Exit(2)
	}
	const writers = 4
	for w := range writers {
		go func() {
			for i := int64(0); ; i++ {
				id := int64(w)<<40 | i
				for version := uint64(1); version <= 2; version++ {
					op := Op{Kind: OpPut, ID: id, Version: version, Payload: crashPayload(id, version)}
					op.Token = op
					s.Submit(op)
				}
			}
		}()
	}
	time.Sleep(time.Minute)
	os.Exit(5)
}

// TestCrashKeepsAcknowledgedWrites runs a child process that writes with
// Sync set, kills it with SIGKILL after it has acknowledged a few hundred
// writes, and checks that every acknowledged write survived intact.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	type ack struct {
		id      int64
		version uint64
	}
	const acksBeforeKill = 500
	var got []ack
	crashtest.KillAfter(t, crashDirEnv, dir, func(line string) (bool, error) {
		var a ack
		if _, err := fmt.Sscanf(line, "ack %d %d\n", &a.id, &a.version); err != nil {
			return false, err
		}
		got = append(got, a)
		return len(got) >= acksBeforeKill, nil
	})

	s := openTestStore(t, dir, Options{Sync: true})
	for _, a := range got {
		mustGet(t, s.Store, a.id, a.version, crashPayload(a.id, a.version))
	}
	if st := s.Stats(); st.Messages < uint64(len(got)) {
		t.Fatalf("reopened store counts %d messages, %d were acknowledged", st.Messages, len(got))
	}
	t.Logf("all %d acknowledged writes survived SIGKILL (store holds %d)", len(got), s.Stats().Messages)
}
