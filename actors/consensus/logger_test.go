package consensus

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// Raft's noisy "missing from unstable log" line goes to debug; its other
// info lines stay at info.
func TestRaftLoggerDemotesUnstableMissing(t *testing.T) {
	var buf bytes.Buffer
	l := raftLogger{log: zerolog.New(&buf).Level(zerolog.InfoLevel)}
	l.Infof("entry at index %d missing from unstable log; ignoring", 97)
	if buf.Len() != 0 {
		t.Errorf("logged at info: %s", buf.String())
	}
	l.Infof("%x became leader at term %d", 1, 2)
	if !strings.Contains(buf.String(), "became leader at term 2") {
		t.Errorf("raft's leadership line was not logged at info: %q", buf.String())
	}
}
