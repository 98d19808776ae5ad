package codec

import "testing"

func TestClassifyError(t *testing.T) {
	tests := []struct {
		reply string
		want  Outcome
	}{
		// Parse errors: the line was not run.
		{ErrSetUsage, Definite},
		{ErrGetUsage, Definite},
		{ErrDelUsage, Definite},
		{ErrPingUsage, Definite},
		{ErrIDNotNumeric, Definite},
		{ErrUnknown, Definite},
		{"ERROR: message too long (max 1000 bytes)", Definite},
		{"ERROR: line too long (max 1064 bytes)", Definite},
		{"ERROR: incomplete line at end of input (no newline); not run", Definite},
		{"ERROR: too many connections (max 1024)", Definite},
		{"ERROR: idle timeout (no request for 5m0s)", Definite},
		{"ERROR: line timeout (a request line must arrive within 30s)", Definite},
		// The leader's replies, as actors/leader words them today.
		{"ERROR: not enough live members: have 1, need 2", Definite},
		{"ERROR: could not store 2 copies: have 1, need 2 (live members: 1)", Definite},
		{"ERROR: leader is starting; retry shortly", Definite},
		{"ERROR: leader restarting", Definite},
		{"ERROR: leader stopping", Definite},
		{"ERROR: unknown operation OP_UNSPECIFIED", Definite},
		{"ERROR: internal error: the request was not applied", Definite},
		{"ERROR: no live member holds id 7", Definite},
		{"ERROR: no replica could serve id 7 (tried 2)", Definite},
		{"ERROR: internal error: the request was not applied (nothing was stored)", Definite},
		{"ERROR: internal error: the write was refused before it was logged: apply put 7: member slot 1 named twice; nothing was stored", Definite},
		{"ERROR: gateway unavailable: open metadata log /data/meta: pebble: malformed manifest", Definite},
		{"ERROR: leader unavailable (leader stopped after 11 crashes within 1m0s; last: boom); the request was not run", Definite},
		{"ERROR: gateway unavailable: leader unavailable (leader stopped after 11 crashes within 1m0s; last: boom); the request was not run", Definite},
		{"ERROR: outcome unknown: the leader crashed while handling this request; read the id to see whether it took effect", Indeterminate},
		{"ERROR: outcome unknown: the metadata log write failed; read the id to see whether it took effect", Indeterminate},
		{"ERROR: overloaded: the log refused the request (raft: proposal dropped); nothing was stored", Definite},
		{"ERROR: disk full: the Raft log's filesystem has 1000 bytes free, below the 4096-byte watermark (--min-free-bytes); this gateway takes no new log entries until 5120 bytes are free; nothing was stored", Definite},
		{"ERROR: timeout: no leader answered this read before its deadline", Definite},
		{"ERROR: outcome unknown: no leader confirmed this request before its deadline; read the id to see whether it took effect", Indeterminate},
		{"ERROR: no leader: this gateway knew of no Raft leader until the request's deadline; the request was sent to none and has no effect", Definite},
		{"ERROR: outcome unknown: leader restarting before this request was answered; read the id to see whether it took effect", Indeterminate},
		{"ERROR: gateway unavailable: raft log unusable: the leader (gateway 1) says this gateway (id 2) acknowledged the log up to index 9", Definite},
		{"ERROR: internal error in the leader; the outcome of this request is unknown", Indeterminate},
		{"ERROR: metadata log write failed; the request was not applied", Indeterminate},
		{"ERROR: outcome unknown: the leader changed", Indeterminate},
		// Anything unknown is indeterminate; so is a look-alike that only
		// contains a definite text.
		{"ERROR: something new", Indeterminate},
		{"ERROR: the outcome is unknown, not enough live members", Indeterminate},
		{"ERROR: ", Indeterminate},
		// Without the prefix, and with the line end.
		{"not enough live members: have 0, need 2", Definite},
		{"ERROR: could not store 3 copies: have 2, need 3 (live members: 2)\r\n", Definite},
	}
	for _, tt := range tests {
		if got := ClassifyError(tt.reply); got != tt.want {
			t.Errorf("ClassifyError(%q) = %v, want %v", tt.reply, got, tt.want)
		}
	}
}

func TestOutcomeString(t *testing.T) {
	if Definite.String() != "definite" || Indeterminate.String() != "indeterminate" {
		t.Errorf("String: %q, %q", Definite, Indeterminate)
	}
}
