package pebbledb

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

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
