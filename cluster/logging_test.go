package cluster

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func decodeLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		lines = append(lines, m)
	}
	return lines
}

func TestSlogBridgeLevels(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(newSlogBridge(zerolog.New(&buf).Level(zerolog.InfoLevel)))
	log.Info("Started EndpointWriter. connecting", slog.String("address", "127.0.0.1:1")) // chatter: debug
	log.Error("EndpointWriter lost connection", slog.String("address", "127.0.0.1:2"))    // routine: warn
	log.Error("EndpointReader failed to deserialize", slog.String("error", "boom"))       // real error
	log.With("system", "abc").Warn("EndpointReader received unknown message type")        // warn kept, system dropped
	log.WithGroup("g").Error("grouped", slog.Int("n", 1))                                 // group prefix

	lines := decodeLines(t, buf.String())
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want 4 (the info chatter hidden):\n%s", len(lines), buf.String())
	}
	want := []struct{ level, message string }{
		{"warn", "EndpointWriter lost connection"},
		{"error", "EndpointReader failed to deserialize"},
		{"warn", "EndpointReader received unknown message type"},
		{"error", "grouped"},
	}
	for i, w := range want {
		if lines[i]["level"] != w.level || lines[i]["message"] != w.message || lines[i]["lib"] != "protoactor" {
			t.Errorf("line %d = %v, want level %s message %q lib protoactor", i, lines[i], w.level, w.message)
		}
	}
	if lines[0]["address"] != "127.0.0.1:2" {
		t.Errorf("attribute lost: %v", lines[0])
	}
	if _, ok := lines[2]["system"]; ok {
		t.Errorf("system attribute should be dropped: %v", lines[2])
	}
	if lines[3]["g.n"] != float64(1) {
		t.Errorf("grouped attribute = %v, want g.n=1", lines[3])
	}
}

func TestSlogBridgeDebugShowsChatter(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(newSlogBridge(zerolog.New(&buf).Level(zerolog.DebugLevel)))
	log.Info("actor system started")
	lines := decodeLines(t, buf.String())
	if len(lines) != 1 || lines[0]["level"] != "debug" {
		t.Fatalf("at debug level protoactor's info lines appear as debug: %q", buf.String())
	}
}

func TestNewLoggerLevels(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "warn")
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Msg("hidden")
	log.Warn().Msg("shown")
	lines := decodeLines(t, buf.String())
	if len(lines) != 1 || lines[0]["message"] != "shown" || lines[0]["time"] == nil {
		t.Fatalf("warn logger wrote %q", buf.String())
	}
	if _, err := NewLogger(&buf, "loud"); err == nil {
		t.Fatal("unknown level accepted")
	}
}
