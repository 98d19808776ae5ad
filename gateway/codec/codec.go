// Package codec parses and formats HaToKuSe, Tolerex's line-based client
// protocol. It is pure: no I/O, no allocation on the parse path beyond what
// the caller keeps, and no knowledge of the cluster behind it.
//
// A request is one line ending in "\n" or "\r\n". Commands are
// case-insensitive; replies end in "\r\n". See docs/protocol.md.
package codec

import (
	"bytes"
	"math"
)

// Kind says which command a line holds.
type Kind uint8

// The command kinds. KindInvalid lines carry their error reply in
// Command.Reply.
const (
	KindInvalid Kind = iota
	KindEmpty        // a blank line: no reply, a prompt only
	KindSet
	KindGet
	KindDel
	KindPing
	KindHelp
	KindQuit
)

// Fixed replies, byte-compatible with the original Tolerex leader.
const (
	ReplyOK       = "OK"
	ReplyNotFound = "NOT_FOUND"
	ReplyBye      = "Bye"
	ReplyPong     = "PONG"

	ErrSetUsage     = "ERROR: SET <id> <message>"
	ErrGetUsage     = "ERROR: GET <id>"
	ErrDelUsage     = "ERROR: DEL <id>"
	ErrPingUsage    = "ERROR: PING"
	ErrIDNotNumeric = "ERROR: id must be numeric"
	ErrUnknown      = "ERROR: unknown command"

	// ErrorPrefix starts every error reply.
	ErrorPrefix = "ERROR: "

	// Prompt follows the banner and every reply unless prompts are off.
	Prompt = "tolerex> "

	// Banner is the first line a prompting server writes on connect.
	Banner = "Tolerex HaToKuSe server. Type HELP for commands."

	// Help is the reply to HELP: one line, so pipelined clients can frame it.
	Help = "Commands: SET <id> <message> | GET <id> | DEL <id> | PING | HELP | QUIT"

	// LineEnd terminates every reply.
	LineEnd = "\r\n"
)

// Command is one parsed request line.
type Command struct {
	Kind Kind
	// ID is the message id of SET, GET and DEL.
	ID int64
	// Message is the SET payload. It aliases the parsed line: copy it
	// before the line's buffer is reused.
	Message []byte
	// Reply is the error reply of a KindInvalid line.
	Reply string
}

// Parse parses one request line. The line may still end in "\n" or "\r\n";
// one of those terminators is removed, nothing else is. The SET message is
// every byte after the id and the spaces or tabs that follow it, kept
// exactly.
func Parse(line []byte) Command {
	line = TrimLineEnd(line)
	rest := skipBlanks(line)
	if len(rest) == 0 {
		return Command{Kind: KindEmpty}
	}
	verb, rest := nextField(rest)
	switch {
	case equalFold(verb, "SET"):
		return parseSet(rest)
	case equalFold(verb, "GET"):
		return parseIDOnly(KindGet, rest, ErrGetUsage)
	case equalFold(verb, "DEL"):
		return parseIDOnly(KindDel, rest, ErrDelUsage)
	case equalFold(verb, "PING"):
		if len(skipBlanks(rest)) != 0 {
			return invalid(ErrPingUsage)
		}
		return Command{Kind: KindPing}
	case equalFold(verb, "HELP"):
		return Command{Kind: KindHelp}
	case equalFold(verb, "QUIT"), equalFold(verb, "EXIT"):
		return Command{Kind: KindQuit}
	default:
		return invalid(ErrUnknown)
	}
}

func parseSet(rest []byte) Command {
	idField, rest := nextField(skipBlanks(rest))
	message := skipBlanks(rest)
	if len(idField) == 0 || len(message) == 0 {
		return invalid(ErrSetUsage)
	}
	id, ok := ParseID(idField)
	if !ok {
		return invalid(ErrIDNotNumeric)
	}
	return Command{Kind: KindSet, ID: id, Message: message}
}

func parseIDOnly(kind Kind, rest []byte, usage string) Command {
	idField, rest := nextField(skipBlanks(rest))
	if len(idField) == 0 || len(skipBlanks(rest)) != 0 {
		return invalid(usage)
	}
	id, ok := ParseID(idField)
	if !ok {
		return invalid(ErrIDNotNumeric)
	}
	return Command{Kind: kind, ID: id}
}

func invalid(reply string) Command { return Command{Kind: KindInvalid, Reply: reply} }

// ParseID parses a decimal signed 64-bit id: an optional sign, then ASCII
// digits (any number of leading zeros allowed). Anything else, including a
// value out of range, is not an id: then it returns 0 and false, never a
// clamped or wrapped value. It accepts exactly what strconv.ParseInt(s, 10,
// 64) accepts, but never allocates, even for a malformed or overlong field.
func ParseID(field []byte) (int64, bool) {
	digits := field
	negative := false
	if len(digits) > 0 && (digits[0] == '+' || digits[0] == '-') {
		negative = digits[0] == '-'
		digits = digits[1:]
	}
	if len(digits) == 0 {
		return 0, false
	}
	// The magnitude may reach 2^63 for a negative id, 2^63-1 otherwise.
	limit := uint64(math.MaxInt64)
	if negative {
		limit++
	}
	var magnitude uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		digit := uint64(c - '0')
		if magnitude > (limit-digit)/10 {
			return 0, false
		}
		magnitude = magnitude*10 + digit
	}
	if negative {
		// For a magnitude of 2^63 the conversion yields math.MinInt64,
		// whose negation is itself: the intended result.
		return -int64(magnitude), true
	}
	return int64(magnitude), true
}

// TrimLineEnd removes one trailing "\n" and then one trailing "\r".
func TrimLineEnd(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

func skipBlanks(b []byte) []byte {
	for len(b) > 0 && isBlank(b[0]) {
		b = b[1:]
	}
	return b
}

// nextField splits b at its first blank: the field before it and the rest
// starting at the blank.
func nextField(b []byte) (field, rest []byte) {
	for i, c := range b {
		if isBlank(c) {
			return b[:i], b[i:]
		}
	}
	return b, nil
}

func equalFold(b []byte, upper string) bool {
	return len(b) == len(upper) && bytes.EqualFold(b, []byte(upper))
}

// AppendReply appends one reply line and its terminator to dst.
func AppendReply(dst []byte, reply []byte) []byte {
	dst = append(dst, reply...)
	return append(dst, LineEnd...)
}

// AppendError appends "ERROR: <reason>\r\n" to dst.
func AppendError(dst []byte, reason string) []byte {
	dst = append(dst, ErrorPrefix...)
	dst = append(dst, reason...)
	return append(dst, LineEnd...)
}
