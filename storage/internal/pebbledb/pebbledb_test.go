package pebbledb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
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
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "broken 42") {
			t.Fatalf("recovered %v, want a panic mentioning the message", r)
		}
		if !strings.Contains(buf.String(), `"level":"fatal"`) || !strings.Contains(buf.String(), "broken 42") {
			t.Fatalf("fatal message not logged: %s", buf.String())
		}
	}()
	l.Fatalf("broken %d", 42)
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
