package codec

import "strings"

// Outcome says what an error reply tells a client about the effect of its
// request.
type Outcome uint8

const (
	// Indeterminate: the request may or may not have taken effect, now or
	// later. A client must assume either. Every error reply that is not
	// known to be definite is indeterminate.
	Indeterminate Outcome = iota
	// Definite: the request had no effect and never will; for a SET, the
	// message is never readable.
	Definite
)

// String names the outcome.
func (o Outcome) String() string {
	if o == Definite {
		return "definite"
	}
	return "indeterminate"
}

// UnavailablePrefix starts the error a gateway that runs no Raft answers
// every request with (its Raft log is unusable or its disk full, or its
// consensus actor was stopped): it is definite, and another gateway of
// the group may serve the request.
const UnavailablePrefix = "gateway unavailable: "

// GatewayUnavailable reports whether reply (with or without "ERROR: "
// and the line end) is that refusal.
func GatewayUnavailable(reply string) bool {
	return strings.HasPrefix(strings.TrimPrefix(reply, ErrorPrefix), UnavailablePrefix)
}

// ClassifyError tells whether an error reply is definite (the request had
// no effect and never will) or indeterminate (it may have taken effect).
// reply is the reply line with or without the "ERROR: " prefix and line
// end. This is the one place that decides it: docs/protocol.md (section
// "Which errors are definite") documents the same list, and the fault
// suite (e2e/chaos) checks histories with it. An error not listed here is
// indeterminate, so a new error text is safe until someone shows it is
// definite and adds it.
func ClassifyError(reply string) Outcome {
	reason := strings.TrimSuffix(strings.TrimPrefix(reply, ErrorPrefix), LineEnd)
	for _, exact := range definiteExact {
		if reason == exact {
			return Definite
		}
	}
	for _, prefix := range definitePrefixes {
		if strings.HasPrefix(reason, prefix) {
			return Definite
		}
	}
	return Indeterminate
}

// definiteExact are the parse errors, without "ERROR: ": the line was not
// run.
var definiteExact = [...]string{
	ErrSetUsage[len(ErrorPrefix):],
	ErrGetUsage[len(ErrorPrefix):],
	ErrDelUsage[len(ErrorPrefix):],
	ErrPingUsage[len(ErrorPrefix):],
	ErrIDNotNumeric[len(ErrorPrefix):],
	ErrUnknown[len(ErrorPrefix):],
}

// definitePrefixes start the definite errors that carry figures. Each is
// definite for the reason given.
var definitePrefixes = [...]string{
	// The gateway refused the line or the connection before running it
	// (gateway/intake.go, gateway/conn.go, gateway/gateway.go).
	"message too long",
	"line too long",
	"incomplete line at end of input",
	"too many connections",
	"idle timeout",
	"line timeout",
	// The leader failed a SET before proposing its index entry: copies
	// already stored are pruned and never indexed (actors/leader
	// requests.go, replicasSelected and checkWrite).
	"not enough live members",
	"could not store ",
	// The leader refused a request it had not started (leader.go,
	// clientRequest).
	"leader is starting",
	"unknown operation",
	// The leader actor stopped or restarted: a GET it held fails with
	// these (a write's outcome is unknown then: leader.go, stopReply).
	"leader restarting",
	"leader stopping",
	// The Raft leader refused the entry (too much uncommitted): nothing
	// was proposed (term.go, proposalsDropped).
	"overloaded: the log refused the request",
	// The leading gateway's Raft log disk is nearly full: the entry was
	// not proposed and the copies are pruned (actors/consensus disk.go;
	// term.go, proposalsDropped).
	"disk full: ",
	// A GET no leader answered before its deadline: reads have no effect
	// (router.go, expiredReply).
	"timeout: no leader answered this read",
	// A SET or DEL that waited its whole deadline with no leader known,
	// and so was never sent to one (router.go, expiredReply).
	"no leader: ",
	// A SET or DEL that waited its whole deadline for room at a leader
	// that answered its gateway "busy", and so was never taken (router.go,
	// expiredReply).
	"busy: ",
	// The state machine rejected the logged entry; applying is
	// deterministic, so a replay rejects it again (leader.go, committed).
	"internal error: the request was not applied",
	// The entry was refused before it was logged: the state machine would
	// have rejected it (leader.go, propose).
	"internal error: the write was refused before it was logged",
	"internal error: the delete was refused before it was logged",
	// Nothing reached the leader: its metadata log is unreadable, or its
	// actor was stopped and the request went to dead letters
	// (leader.go, refuseUnavailable; gateway/undelivered.go).
	UnavailablePrefix,
	"leader unavailable",
	// A GET failed: reads have no effect.
	"no live member holds id",
	"no replica could serve id",
}
