package pebbledb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/rs/zerolog"
)

// TestPebbleLogsGoToLogger checks that Pebble's own messages reach the
// configured zerolog.Logger, tagged and at debug level.
func TestPebbleLogsGoToLogger(t *testing.T) {
	var buf bytes.Buffer
	logger := zerolog.New(&buf).Level(zerolog.DebugLevel)
	db, err := Open(t.TempDir(), Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("k"), []byte("v"), WriteOptions(true)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	pebbleLines := 0
	for line := range strings.Lines(buf.String()) {
		var fields map[string]any
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if fields["subsystem"] == "pebble" {
			pebbleLines++
			if fields["level"] != "debug" && fields["level"] != "error" {
				t.Errorf("pebble line at level %v: %s", fields["level"], line)
			}
		}
	}
	if pebbleLines == 0 {
		t.Fatalf("no Pebble output reached the logger:\n%s", buf.String())
	}
}

func TestPebbleFatalfLogsAndPanics(t *testing.T) {
	var buf bytes.Buffer
	l := logger{log: zerolog.New(&buf)}
	cause := errors.New("no space left on device")
	defer func() {
		r := recover()
		err, ok := r.(error)
		if !ok || !strings.Contains(err.Error(), "broken 42") || !errors.Is(err, cause) {
			t.Fatalf("recovered %v, want an error mentioning the message and wrapping its error argument", r)
		}
		if !strings.Contains(buf.String(), `"level":"fatal"`) || !strings.Contains(buf.String(), "broken 42") {
			t.Fatalf("fatal message not logged: %s", buf.String())
		}
	}()
	l.Fatalf("broken %d: %v", 42, cause)
}

// TestCommitTurnsFatalIntoError makes the write-ahead log's writes fail
// with ENOSPC. Pebble then calls Fatalf from its commit ("fatal commit
// error"); Commit reports it as an error, the database closes, and a
// read-only open serves every earlier commit.
func TestCommitTurnsFatalIntoError(t *testing.T) {
	dir := t.TempDir()
	var full atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if full.Load() && op.Kind == errorfs.OpFileWrite && strings.HasSuffix(op.Path, ".log") {
			return syscall.ENOSPC
		}
		return nil
	}))
	var logs bytes.Buffer
	db, err := Open(dir, Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20, Logger: zerolog.New(&logs), FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		b := db.NewBatch()
		_ = b.Set(fmt.Appendf(nil, "k%03d", i), []byte("v"), nil)
		if err := Commit(b, pebble.Sync); err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
		_ = b.Close()
	}
	full.Store(true)
	b := db.NewBatch()
	_ = b.Set([]byte("lost"), []byte("v"), nil)
	err = Commit(b, pebble.Sync)
	if !errors.Is(err, ErrFatal) || !errors.Is(err, syscall.ENOSPC) || errors.Is(err, ErrWedged) {
		t.Fatalf("commit on a full disk: %v; want an error wrapping ErrFatal and ENOSPC, not ErrWedged", err)
	}
	_ = b.Close()
	if !strings.Contains(logs.String(), "fatal commit error") {
		t.Errorf("Pebble's fatal commit error was not logged:\n%s", logs.String())
	}
	// Close does not hang, and reports the broken write-ahead log.
	t.Logf("close after the failed commit: %v", db.Close())

	ro, err := Open(dir, Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20, Logger: zerolog.Nop(), ReadOnly: true, FS: fs})
	if err != nil {
		t.Fatalf("read-only open on the full disk: %v", err)
	}
	defer ro.Close()
	for i := range 100 {
		v, closer, err := ro.Get(fmt.Appendf(nil, "k%03d", i))
		if err != nil || string(v) != "v" {
			t.Fatalf("read-only get k%03d: %q %v", i, v, err)
		}
		_ = closer.Close()
	}
}

// TestCommitPanicsAreClassified checks how Commit reports what Pebble's
// commit raises: the Fatalf after a failed commit leaves Pebble closable;
// any other panic (for example db.go:997, a write-ahead-log write that
// fails after an earlier unsynced one did, with the commit lock held) is
// reported as wedged. (Seen with a fault-injecting filesystem and
// unsynced commits; which of the two, or a memtable rotation that ends
// the process, comes first depends on timing, so this test raises them
// itself.)
func TestCommitPanicsAreClassified(t *testing.T) {
	enospc := fmt.Errorf("write 000007.log: %w", syscall.ENOSPC)
	l := logger{log: zerolog.Nop()}
	cases := []struct {
		name   string
		raise  func()
		wedged bool
	}{
		{"fatal commit error", func() { l.Fatalf("pebble: fatal commit error: %v", enospc) }, false},
		{"other Fatalf", func() { l.Fatalf("MANIFEST write failed: %v", enospc) }, true},
		{"raw panic", func() { panic(enospc) }, true},
		{"non-error panic", func() { panic("pebble: invalid function call") }, true},
	}
	for _, c := range cases {
		err := recoverCommit(func() error { c.raise(); return nil })
		if !errors.Is(err, ErrFatal) || errors.Is(err, ErrWedged) != c.wedged {
			t.Errorf("%s: %v; want ErrFatal, wedged=%v", c.name, err, c.wedged)
		}
		if c.name != "non-error panic" && !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("%s: %v does not wrap ENOSPC", c.name, err)
		}
	}
	if err := recoverCommit(func() error { return enospc }); err != enospc {
		t.Errorf("a returned error came back as %v", err)
	}
}

func TestReadOnlyOpenOfMissingDatabase(t *testing.T) {
	for _, dir := range []string{filepath.Join(t.TempDir(), "missing"), t.TempDir()} {
		_, err := Open(dir, Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20, Logger: zerolog.Nop(), ReadOnly: true})
		if !errors.Is(err, ErrNoDatabase) || IsDamage(err) {
			t.Errorf("read-only open of %s: %v; want ErrNoDatabase, not damage", dir, err)
		}
		// Pebble takes its lock file even read-only: an empty file.
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if info, err := e.Info(); err != nil || e.Name() != "LOCK" || info.Size() != 0 {
				t.Errorf("read-only open wrote %s into %s", e.Name(), dir)
			}
		}
	}
}

func TestLogLimiter(t *testing.T) {
	l := &logLimiter{interval: 10 * time.Second}
	start := time.Unix(1000, 0)
	steps := []struct {
		after   time.Duration
		ok      bool
		skipped int
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{2 * time.Second, false, 0},
		{10 * time.Second, true, 2}, // the interval passed: logged, with the two held back
		{11 * time.Second, false, 0},
		{25 * time.Second, true, 1},
		{36 * time.Second, true, 0},
	}
	for i, s := range steps {
		ok, skipped := l.allow(start.Add(s.after))
		if ok != s.ok || skipped != s.skipped {
			t.Fatalf("step %d (+%v): allow = %v, %d; want %v, %d", i, s.after, ok, skipped, s.ok, s.skipped)
		}
	}
}

// TestBackgroundErrorsAreRateLimited feeds the event listener a burst of
// background errors, as Pebble's retries on a full disk do: one line is
// logged.
func TestBackgroundErrorsAreRateLimited(t *testing.T) {
	var buf bytes.Buffer
	el := eventListener(zerolog.New(&buf), nil)
	for i := range 1000 {
		el.BackgroundError(fmt.Errorf("write %06d.sst: %w", i, syscall.ENOSPC))
	}
	if n := strings.Count(buf.String(), "background error"); n != 1 {
		t.Fatalf("%d background error lines for a burst of 1000, want 1:\n%s", n, buf.String())
	}
}

func TestGroupCommitBatchesWhatIsQueued(t *testing.T) {
	queue := make(chan int, 100)
	for i := 1; i <= 10; i++ {
		queue <- i // sizes 1..10
	}
	close(queue)
	var batches [][]int
	GroupCommit(queue, 4, 12, func(n int) int { return n }, func(b []int) {
		batches = append(batches, append([]int(nil), b...))
	})
	// At most 4 items and 12 "bytes" a batch; an item that does not fit
	// opens the next batch; a lone oversized item still commits.
	want := [][]int{{1, 2, 3, 4}, {5, 6}, {7}, {8}, {9}, {10}}
	if len(batches) != len(want) {
		t.Fatalf("batches %v, want %v", batches, want)
	}
	for i := range want {
		if len(batches[i]) != len(want[i]) {
			t.Fatalf("batches %v, want %v", batches, want)
		}
		for j := range want[i] {
			if batches[i][j] != want[i][j] {
				t.Fatalf("batches %v, want %v", batches, want)
			}
		}
	}
}

// TestDamagedBlockIsAnErrorNotAFatal flips bytes in the middle of an
// sstable: reading it returns a corruption error (with Pebble's default
// handler it would call Fatalf, which panics), IsDamage recognises it and
// Readable drops Pebble's detail carrier from its message.
func TestDamagedBlockIsAnErrorNotAFatal(t *testing.T) {
	dir := t.TempDir()
	opts := Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20, Logger: zerolog.Nop()}
	db, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	key := func(i int) []byte { return fmt.Appendf(nil, "key-%06d", i) }
	for i := range 5000 {
		if err := db.Set(key(i), fmt.Appendf(nil, "value %d %x", i, i*7919), WriteOptions(false)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ssts, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil || len(ssts) != 1 {
		t.Fatalf("sstables %v, %v; want one", ssts, err)
	}
	data, err := os.ReadFile(ssts[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := len(data) / 2; i < len(data)/2+16; i++ {
		data[i] ^= 0xff
	}
	if err := os.WriteFile(ssts[0], data, 0o644); err != nil {
		t.Fatal(err)
	}

	db, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var damaged error
	for i := range 5000 {
		_, closer, err := db.Get(key(i))
		if err == nil {
			closer.Close()
			continue
		}
		damaged = err
		break
	}
	if damaged == nil {
		t.Fatal("no read failed after flipping bytes in the middle of the only sstable")
	}
	if !IsDamage(damaged) || !strings.Contains(damaged.Error(), corruptionCarrier) {
		t.Fatalf("read error %q: IsDamage=%v; want a Pebble corruption error with its detail carrier", damaged, IsDamage(damaged))
	}
	readable := Readable(damaged)
	if strings.Contains(readable.Error(), "carrier") || !pebble.IsCorruptionError(readable) || !IsDamage(readable) {
		t.Fatalf("Readable(%q) = %q", damaged, readable)
	}
	if IsDamage(nil) || IsDamage(errors.New("lock held")) || Readable(nil) != nil {
		t.Fatal("IsDamage or Readable misjudge errors that are not damage")
	}
}
