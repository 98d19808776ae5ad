package codec

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
)

// kindName names k for failure messages; ok is false for an undefined Kind.
func kindName(k Kind) (name string, ok bool) {
	switch k {
	case KindInvalid:
		return "KindInvalid", true
	case KindEmpty:
		return "KindEmpty", true
	case KindSet:
		return "KindSet", true
	case KindGet:
		return "KindGet", true
	case KindDel:
		return "KindDel", true
	case KindPing:
		return "KindPing", true
	case KindHelp:
		return "KindHelp", true
	case KindQuit:
		return "KindQuit", true
	}
	return fmt.Sprintf("Kind(%d)", uint8(k)), false
}

// Shorthands for the expected commands in the tables below.
func set(id int64, message string) Command {
	return Command{Kind: KindSet, ID: id, Message: []byte(message)}
}
func get(id int64) Command       { return Command{Kind: KindGet, ID: id} }
func del(id int64) Command       { return Command{Kind: KindDel, ID: id} }
func fails(reply string) Command { return Command{Kind: KindInvalid, Reply: reply} }
func only(kind Kind) Command     { return Command{Kind: kind} }
func describe(c Command) string {
	name, _ := kindName(c.Kind)
	return fmt.Sprintf("{%s ID=%d Message=%q Reply=%q}", name, c.ID, c.Message, c.Reply)
}

// sameCommand reports whether got and want agree on the exact Kind, ID,
// Message bytes and Reply. A nil and an empty Message are the same.
func sameCommand(got, want Command) bool {
	return got.Kind == want.Kind && got.ID == want.ID &&
		bytes.Equal(got.Message, want.Message) && got.Reply == want.Reply
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Command
	}{
		// SET: framing and case.
		{"set CRLF", "SET 1 hello\r\n", set(1, "hello")},
		{"set LF", "SET 1 hello\n", set(1, "hello")},
		{"set no terminator", "SET 1 hello", set(1, "hello")},
		{"set lower case", "set 1 hello\r\n", set(1, "hello")},
		{"set mixed case", "sEt 1 hello\r\n", set(1, "hello")},
		{"set leading spaces", "   SET 1 hello\r\n", set(1, "hello")},
		{"set leading tabs", "\t\tSET 1 hello\r\n", set(1, "hello")},
		{"set tab separators", "SET\t1\thello\r\n", set(1, "hello")},
		{"set runs of blanks before fields", "SET  \t 1 \t  hello\r\n", set(1, "hello")},

		// SET: the message is kept byte for byte.
		{"set message with a space", "SET 1 hello world\r\n", set(1, "hello world")},
		{"set message double space", "SET 1 hello  world\r\n", set(1, "hello  world")},
		{"set message inner tab", "SET 1 a\tb\r\n", set(1, "a\tb")},
		{"set message mixed inner blanks", "SET 1 a \t  \tb\r\n", set(1, "a \t  \tb")},
		{"set message trailing spaces", "SET 1 hello   \r\n", set(1, "hello   ")},
		{"set message trailing tab LF", "SET 1 hello\t\n", set(1, "hello\t")},
		{"set message NUL inside", "SET 1 a\x00b\r\n", set(1, "a\x00b")},
		{"set message only NUL", "SET 1 \x00\n", set(1, "\x00")},
		{"set message invalid UTF-8", "SET 1 \xff\xfe\xc3(\r\n", set(1, "\xff\xfe\xc3(")},
		{"set message UTF-8", "SET 2 héllo wörld ✓\r\n", set(2, "héllo wörld ✓")},
		{"set message lone CR inside", "SET 1 a\rb\r\n", set(1, "a\rb")},
		{"set message ends in CR before CRLF", "SET 1 a\r\r\n", set(1, "a\r")},
		{"set message is a lone CR", "SET 1 \r\r\n", set(1, "\r")},
		{"set message looks like a command", "SET 1 SET 2 x\r\n", set(1, "SET 2 x")},
		{"set message NOT_FOUND", "SET 3 NOT_FOUND\r\n", set(3, "NOT_FOUND")},
		{"set message looks like an error", "SET 3 ERROR: x\r\n", set(3, "ERROR: x")},

		// SET: ids.
		{"set negative id", "SET -5 x\r\n", set(-5, "x")},
		{"set plus sign id", "SET +7 x\r\n", set(7, "x")},
		{"set leading zeros id", "SET 007 x\r\n", set(7, "x")},
		{"set zero id", "SET 0 x\r\n", set(0, "x")},
		{"set minus zero id", "SET -0 x\r\n", set(0, "x")},
		{"set max int64 id", "SET 9223372036854775807 x\r\n", set(math.MaxInt64, "x")},
		{"set min int64 id", "SET -9223372036854775808 x\r\n", set(math.MinInt64, "x")},
		{"set max int64 zero padded", "SET " + strings.Repeat("0", 80) + "9223372036854775807 x\r\n", set(math.MaxInt64, "x")},
		{"set one past max", "SET 9223372036854775808 x\r\n", fails(ErrIDNotNumeric)},
		{"set one past min", "SET -9223372036854775809 x\r\n", fails(ErrIDNotNumeric)},
		{"set twice max", "SET 18446744073709551614 x\r\n", fails(ErrIDNotNumeric)},
		{"set 2^64", "SET 18446744073709551616 x\r\n", fails(ErrIDNotNumeric)},
		{"set huge id", "SET 99999999999999999999999999999 x\r\n", fails(ErrIDNotNumeric)},
		{"set decimal id", "SET 1.5 x\r\n", fails(ErrIDNotNumeric)},
		{"set hex id", "SET 0x10 x\r\n", fails(ErrIDNotNumeric)},
		{"set exponent id", "SET 1e3 x\r\n", fails(ErrIDNotNumeric)},
		{"set underscore id", "SET 1_000 x\r\n", fails(ErrIDNotNumeric)},
		{"set minus only id", "SET - x\r\n", fails(ErrIDNotNumeric)},
		{"set plus only id", "SET + x\r\n", fails(ErrIDNotNumeric)},
		{"set double minus id", "SET --1 x\r\n", fails(ErrIDNotNumeric)},
		{"set plus minus id", "SET +-1 x\r\n", fails(ErrIDNotNumeric)},
		{"set alphabetic id", "SET abc x\r\n", fails(ErrIDNotNumeric)},
		{"set digits then letter id", "SET 1a x\r\n", fails(ErrIDNotNumeric)},
		{"set arabic-indic digit id", "SET \u0661 x\r\n", fails(ErrIDNotNumeric)},
		{"set fullwidth digit id", "SET \uff11 x\r\n", fails(ErrIDNotNumeric)},
		{"set id with NUL", "SET 1\x00 x\r\n", fails(ErrIDNotNumeric)},

		// SET: arity, checked before the id.
		{"set alone", "SET\r\n", fails(ErrSetUsage)},
		{"set alone lower case", "set\n", fails(ErrSetUsage)},
		{"set trailing blanks only", "SET \t \r\n", fails(ErrSetUsage)},
		{"set id without message", "SET 1\r\n", fails(ErrSetUsage)},
		{"set id then blanks", "SET 1 \t  \r\n", fails(ErrSetUsage)},
		{"set bad id without message", "SET abc\r\n", fails(ErrSetUsage)},
		{"set decimal id without message", "SET 1.5\r\n", fails(ErrSetUsage)},

		// GET.
		{"get CRLF", "GET 1\r\n", get(1)},
		{"get LF", "GET 1\n", get(1)},
		{"get lower case", "get 42\r\n", get(42)},
		{"get mixed case", "gEt 42\r\n", get(42)},
		{"get tab separator", "GET\t42\r\n", get(42)},
		{"get surrounding blanks", " \t GET  \t 42 \t \r\n", get(42)},
		{"get min int64", "GET -9223372036854775808\r\n", get(math.MinInt64)},
		{"get leading zeros", "GET 007\r\n", get(7)},
		{"get no id", "GET\r\n", fails(ErrGetUsage)},
		{"get only blanks", "GET   \r\n", fails(ErrGetUsage)},
		{"get two ids", "GET 1 2\r\n", fails(ErrGetUsage)},
		{"get extra word", "GET 1 x\r\n", fails(ErrGetUsage)},
		{"get two bad fields", "GET abc def\r\n", fails(ErrGetUsage)},
		{"get alphabetic id", "GET abc\r\n", fails(ErrIDNotNumeric)},
		{"get one past max", "GET 9223372036854775808\r\n", fails(ErrIDNotNumeric)},
		{"get id ending in CR", "GET 1\r\r\n", fails(ErrIDNotNumeric)},

		// DEL.
		{"del CRLF", "DEL 5\r\n", del(5)},
		{"del lower case LF", "del 5\n", del(5)},
		{"del negative", "Del -1\r\n", del(-1)},
		{"del max", "DEL 9223372036854775807\r\n", del(math.MaxInt64)},
		{"del no id", "DEL\r\n", fails(ErrDelUsage)},
		{"del two ids", "DEL 1 2\r\n", fails(ErrDelUsage)},
		{"del bad fields", "DEL abc def\r\n", fails(ErrDelUsage)},
		{"del hex id", "DEL 0x10\r\n", fails(ErrIDNotNumeric)},

		// PING, HELP, QUIT, EXIT.
		{"ping", "PING\r\n", only(KindPing)},
		{"ping lower case LF", "ping\n", only(KindPing)},
		{"ping blanks around", " \tPiNg \t\r\n", only(KindPing)},
		{"ping with argument", "PING x\r\n", fails(ErrPingUsage)},
		{"ping with number", "PING 1\r\n", fails(ErrPingUsage)},
		{"help", "HELP\r\n", only(KindHelp)},
		{"help lower case", "help\n", only(KindHelp)},
		{"help ignores arguments", "HELP SET\r\n", only(KindHelp)},
		{"quit", "QUIT\r\n", only(KindQuit)},
		{"quit lower case", "quit\n", only(KindQuit)},
		{"quit ignores arguments", "QUIT now\r\n", only(KindQuit)},
		{"exit", "EXIT\r\n", only(KindQuit)},
		{"exit mixed case", "Exit\n", only(KindQuit)},

		// Blank lines.
		{"empty", "", only(KindEmpty)},
		{"LF only", "\n", only(KindEmpty)},
		{"CRLF only", "\r\n", only(KindEmpty)},
		{"spaces", "   ", only(KindEmpty)},
		{"blanks CRLF", " \t \t\r\n", only(KindEmpty)},

		// Unknown commands.
		{"unknown word", "FOO\r\n", fails(ErrUnknown)},
		{"unknown PUT", "PUT 1 x\r\n", fails(ErrUnknown)},
		{"verb prefix", "SE 1 x\r\n", fails(ErrUnknown)},
		{"verb with suffix", "SETX 1 x\r\n", fails(ErrUnknown)},
		{"verb glued to id", "GET1\r\n", fails(ErrUnknown)},
		{"verb split", "G ET 1\r\n", fails(ErrUnknown)},
		{"lone CR line", "\r\r\n", fails(ErrUnknown)},
		{"vertical tab is not a blank", "GET\v1\r\n", fails(ErrUnknown)},
		{"NUL before verb", "\x00GET 1\r\n", fails(ErrUnknown)},
		{"unicode long s does not fold to S", "\u017fET 1 x\r\n", fails(ErrUnknown)},
		{"kelvin sign is not K", "\u212a\r\n", fails(ErrUnknown)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := []byte(tt.line)
			got := Parse(line)
			if !sameCommand(got, tt.want) {
				t.Fatalf("Parse(%q) = %s, want %s", tt.line, describe(got), describe(tt.want))
			}
			if string(line) != tt.line {
				t.Fatalf("Parse modified its input: %q became %q", tt.line, line)
			}
			// The fuzz oracle must agree with every hand-checked row, or
			// the fuzz target would be checking the wrong thing.
			if model := referenceParse(line); !sameCommand(model, tt.want) {
				t.Fatalf("referenceParse(%q) = %s, want %s", tt.line, describe(model), describe(tt.want))
			}
		})
	}
}

// TestParseMessageAliasesLine checks the documented aliasing: the SET
// message is a view of the caller's buffer, not a copy.
func TestParseMessageAliasesLine(t *testing.T) {
	line := []byte("SET 9 abc\r\n")
	cmd := Parse(line)
	if cmd.Kind != KindSet || string(cmd.Message) != "abc" {
		t.Fatalf("Parse = %s, want SET 9 abc", describe(cmd))
	}
	line[7] = 'X'
	if string(cmd.Message) != "aXc" {
		t.Fatalf("after changing the line, Message = %q, want %q (it must alias the line)", cmd.Message, "aXc")
	}
}

// TestParseDoesNotAllocate holds the package to its promise for valid and
// invalid lines alike: a client sending garbage must not cost allocations.
func TestParseDoesNotAllocate(t *testing.T) {
	lines := []string{
		"SET 1 hello world\r\n",
		"set -9223372036854775808 " + strings.Repeat("x", 4096) + "\r\n",
		"GET 42\r\n",
		"DEL 42\n",
		"PING\r\n",
		"HELP\r\n",
		"QUIT\r\n",
		"\r\n",
		"GET abc\r\n",
		"GET 9223372036854775808\r\n",
		"SET " + strings.Repeat("0", 100) + "1 x\r\n",
		"SET " + strings.Repeat("9", 100) + " x\r\n",
		"SET 1\r\n",
		"NOPE\r\n",
	}
	for _, text := range lines {
		line := []byte(text)
		allocs := testing.AllocsPerRun(100, func() { Parse(line) })
		if allocs != 0 {
			t.Errorf("Parse(%.40q) allocates %v times per call, want 0", text, allocs)
		}
	}
}

func TestParseID(t *testing.T) {
	tests := []struct {
		field  string
		want   int64
		wantOK bool
	}{
		{"0", 0, true},
		{"1", 1, true},
		{"-5", -5, true},
		{"+7", 7, true},
		{"007", 7, true},
		{"-007", -7, true},
		{"-0", 0, true},
		{"+0", 0, true},
		{"9223372036854775807", math.MaxInt64, true},
		{"-9223372036854775808", math.MinInt64, true},
		{"+9223372036854775807", math.MaxInt64, true},
		{"9223372036854775806", math.MaxInt64 - 1, true},
		{"-9223372036854775807", math.MinInt64 + 1, true},
		{"922337203685477580", math.MaxInt64 / 10, true},
		{strings.Repeat("0", 200) + "42", 42, true},
		{"-" + strings.Repeat("0", 200) + "9223372036854775808", math.MinInt64, true},
		{"9223372036854775808", 0, false},
		{"-9223372036854775809", 0, false},
		{"9223372036854775810", 0, false},
		{"92233720368547758070", 0, false},
		{"18446744073709551615", 0, false},
		{"18446744073709551616", 0, false},
		{"-18446744073709551616", 0, false},
		{"99999999999999999999999999999999999999", 0, false},
		{"", 0, false},
		{"-", 0, false},
		{"+", 0, false},
		{"--1", 0, false},
		{"++1", 0, false},
		{"+-1", 0, false},
		{"1-", 0, false},
		{"1.5", 0, false},
		{"1.0", 0, false},
		{"0x10", 0, false},
		{"0b1", 0, false},
		{"0o7", 0, false},
		{"1e3", 0, false},
		{"1_000", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"1\t", 0, false},
		{"1\r", 0, false},
		{"1\x00", 0, false},
		{"abc", 0, false},
		{"\u0661", 0, false},
		{"\uff11", 0, false},
		{"١٢٣", 0, false},
		{"/", 0, false}, // the byte before '0'
		{":", 0, false}, // the byte after '9'
	}
	for _, tt := range tests {
		got, ok := ParseID([]byte(tt.field))
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ParseID(%q) = %d, %v; want %d, %v", tt.field, got, ok, tt.want, tt.wantOK)
		}
		// The documented rule is exactly strconv's base-10 rule.
		ref, err := strconv.ParseInt(tt.field, 10, 64)
		if (err == nil) != ok || (ok && ref != got) {
			t.Errorf("ParseID(%q) = %d, %v; strconv.ParseInt = %d, %v", tt.field, got, ok, ref, err)
		}
	}
}

// TestParseIDBoundaries walks every value near both ends of int64 and near
// each power of ten, in every accepted spelling.
func TestParseIDBoundaries(t *testing.T) {
	var values []int64
	for delta := int64(0); delta < 1000; delta++ {
		values = append(values, math.MaxInt64-delta, math.MinInt64+delta, delta, -delta)
	}
	for power := int64(1); power <= math.MaxInt64/10; power *= 10 {
		for delta := int64(-2); delta <= 2; delta++ {
			values = append(values, power+delta, -(power + delta))
		}
	}
	for _, value := range values {
		plain := strconv.FormatInt(value, 10)
		spellings := []string{plain}
		if value >= 0 {
			spellings = append(spellings, "+"+plain, "000"+plain)
		} else {
			spellings = append(spellings, "-000"+plain[1:])
		}
		for _, spelling := range spellings {
			got, ok := ParseID([]byte(spelling))
			if !ok || got != value {
				t.Fatalf("ParseID(%q) = %d, %v; want %d, true", spelling, got, ok, value)
			}
		}
	}
	// One past each end, spelled out by decimal arithmetic on the string.
	for _, past := range []string{"9223372036854775808", "-9223372036854775809", "9223372036854775900", "-9223372036854775900"} {
		if got, ok := ParseID([]byte(past)); ok {
			t.Fatalf("ParseID(%q) = %d, true; want out of range", past, got)
		}
	}
}

func TestParseIDDoesNotAllocate(t *testing.T) {
	for _, field := range []string{"12345", "-9223372036854775808", "abc", "9223372036854775808", strings.Repeat("7", 300)} {
		b := []byte(field)
		if allocs := testing.AllocsPerRun(100, func() { ParseID(b) }); allocs != 0 {
			t.Errorf("ParseID(%.40q) allocates %v times, want 0", field, allocs)
		}
	}
}

func TestTrimLineEnd(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"\n", ""},
		{"\r\n", ""},
		{"\r", ""},
		{"abc", "abc"},
		{"abc\n", "abc"},
		{"abc\r\n", "abc"},
		{"abc\r", "abc"},
		{"abc\r\r\n", "abc\r"},
		{"abc\n\n", "abc\n"},
		{"abc\r\n\r\n", "abc\r\n"},
		{"abc\n\r", "abc\n"},
		{"a\rb", "a\rb"},
		{"abc  \t\r\n", "abc  \t"},
	}
	for _, tt := range tests {
		in := []byte(tt.in)
		got := TrimLineEnd(in)
		if string(got) != tt.want {
			t.Errorf("TrimLineEnd(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if len(got) > 0 && &got[0] != &in[0] {
			t.Errorf("TrimLineEnd(%q) copied the line; it must return a prefix of it", tt.in)
		}
	}
}

func TestAppendReply(t *testing.T) {
	tests := []struct {
		dst, reply, want string
	}{
		{"", ReplyOK, "OK\r\n"},
		{"", ReplyNotFound, "NOT_FOUND\r\n"},
		{"", ReplyPong, "PONG\r\n"},
		{"", ReplyBye, "Bye\r\n"},
		{"", "", "\r\n"},
		{"OK\r\n", "hello  world ", "OK\r\nhello  world \r\n"},
		{"", "a\x00b\xff", "a\x00b\xff\r\n"},
	}
	for _, tt := range tests {
		var dst []byte
		if tt.dst != "" {
			dst = []byte(tt.dst)
		}
		got := AppendReply(dst, []byte(tt.reply))
		if string(got) != tt.want {
			t.Errorf("AppendReply(%q, %q) = %q, want %q", tt.dst, tt.reply, got, tt.want)
		}
	}

	// With room in dst, appending reuses it.
	dst := make([]byte, 0, 64)
	reply := []byte(ReplyOK)
	if allocs := testing.AllocsPerRun(100, func() { AppendReply(dst, reply) }); allocs != 0 {
		t.Errorf("AppendReply with spare capacity allocates %v times, want 0", allocs)
	}
}

func TestAppendError(t *testing.T) {
	if got := string(AppendError(nil, "unknown command")); got != "ERROR: unknown command\r\n" {
		t.Errorf("AppendError(nil, %q) = %q", "unknown command", got)
	}
	if got := string(AppendError([]byte("OK\r\n"), "x")); got != "OK\r\nERROR: x\r\n" {
		t.Errorf("AppendError after a reply = %q", got)
	}
	// Every fixed error reply is AppendError of its reason.
	for _, reply := range []string{ErrSetUsage, ErrGetUsage, ErrDelUsage, ErrPingUsage, ErrIDNotNumeric, ErrUnknown} {
		reason, ok := strings.CutPrefix(reply, ErrorPrefix)
		if !ok {
			t.Errorf("error reply %q does not start with %q", reply, ErrorPrefix)
			continue
		}
		if got := string(AppendError(nil, reason)); got != reply+LineEnd {
			t.Errorf("AppendError(nil, %q) = %q, want %q", reason, got, reply+LineEnd)
		}
		if got := string(AppendReply(nil, []byte(reply))); got != reply+LineEnd {
			t.Errorf("AppendReply(nil, %q) = %q, want %q", reply, got, reply+LineEnd)
		}
	}
}

// TestWireStrings pins every byte clients depend on; the replies must stay
// byte-compatible with the original Tolerex leader.
func TestWireStrings(t *testing.T) {
	pinned := []struct{ name, got, want string }{
		{"ReplyOK", ReplyOK, "OK"},
		{"ReplyNotFound", ReplyNotFound, "NOT_FOUND"},
		{"ReplyBye", ReplyBye, "Bye"},
		{"ReplyPong", ReplyPong, "PONG"},
		{"ErrSetUsage", ErrSetUsage, "ERROR: SET <id> <message>"},
		{"ErrGetUsage", ErrGetUsage, "ERROR: GET <id>"},
		{"ErrDelUsage", ErrDelUsage, "ERROR: DEL <id>"},
		{"ErrPingUsage", ErrPingUsage, "ERROR: PING"},
		{"ErrIDNotNumeric", ErrIDNotNumeric, "ERROR: id must be numeric"},
		{"ErrUnknown", ErrUnknown, "ERROR: unknown command"},
		{"ErrorPrefix", ErrorPrefix, "ERROR: "},
		{"Prompt", Prompt, "tolerex> "},
		{"LineEnd", LineEnd, "\r\n"},
	}
	for _, p := range pinned {
		if p.got != p.want {
			t.Errorf("%s = %q, want %q", p.name, p.got, p.want)
		}
	}
	for _, line := range []string{Banner, Help, Prompt} {
		if line == "" || strings.ContainsAny(line, "\r\n") {
			t.Errorf("%q must be one non-empty line without a terminator", line)
		}
	}
	for _, verb := range []string{"SET <id> <message>", "GET <id>", "DEL <id>", "PING", "HELP", "QUIT"} {
		if !strings.Contains(Help, verb) {
			t.Errorf("Help %q does not mention %q", Help, verb)
		}
	}
	if strings.HasPrefix(Help, ErrorPrefix) || strings.HasPrefix(Banner, ErrorPrefix) {
		t.Error("Help and Banner must not look like error replies")
	}
}

func BenchmarkParseSet(b *testing.B) {
	line := []byte("SET 1234567 the quick brown fox jumps over the lazy dog\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if Parse(line).Kind != KindSet {
			b.Fatal("not a SET")
		}
	}
}

func BenchmarkParseGet(b *testing.B) {
	line := []byte("GET 1234567\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if Parse(line).Kind != KindGet {
			b.Fatal("not a GET")
		}
	}
}

func BenchmarkParseInvalidID(b *testing.B) {
	line := []byte("GET 12x4567\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if Parse(line).Kind != KindInvalid {
			b.Fatal("not invalid")
		}
	}
}
