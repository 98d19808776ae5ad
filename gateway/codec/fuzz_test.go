package codec

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"testing"
)

// blanks are the field separators of HaToKuSe.
const blanks = " \t"

// referenceParse is a second, deliberately naive implementation of the
// protocol contract, written with the strings package and strconv. The fuzz
// target holds Parse to it; TestParse holds it to the hand-checked table.
func referenceParse(raw []byte) Command {
	line := strings.TrimSuffix(string(raw), "\n")
	line = strings.TrimSuffix(line, "\r")
	line = strings.TrimLeft(line, blanks)
	if line == "" {
		return Command{Kind: KindEmpty}
	}
	verb, rest := line, ""
	if i := strings.IndexAny(line, blanks); i >= 0 {
		verb, rest = line[:i], line[i:]
	}
	parseID := func(field string) (int64, bool) {
		id, err := strconv.ParseInt(field, 10, 64)
		return id, err == nil
	}
	switch asciiUpper(verb) {
	case "SET":
		rest = strings.TrimLeft(rest, blanks)
		idField, message := rest, ""
		if i := strings.IndexAny(rest, blanks); i >= 0 {
			idField, message = rest[:i], strings.TrimLeft(rest[i:], blanks)
		}
		if idField == "" || message == "" {
			return Command{Kind: KindInvalid, Reply: ErrSetUsage}
		}
		id, ok := parseID(idField)
		if !ok {
			return Command{Kind: KindInvalid, Reply: ErrIDNotNumeric}
		}
		return Command{Kind: KindSet, ID: id, Message: []byte(message)}
	case "GET", "DEL":
		kind, usage := KindGet, ErrGetUsage
		if asciiUpper(verb) == "DEL" {
			kind, usage = KindDel, ErrDelUsage
		}
		fields := strings.FieldsFunc(rest, func(r rune) bool { return r == ' ' || r == '\t' })
		if len(fields) != 1 {
			return Command{Kind: KindInvalid, Reply: usage}
		}
		id, ok := parseID(fields[0])
		if !ok {
			return Command{Kind: KindInvalid, Reply: ErrIDNotNumeric}
		}
		return Command{Kind: kind, ID: id}
	case "PING":
		if strings.Trim(rest, blanks) != "" {
			return Command{Kind: KindInvalid, Reply: ErrPingUsage}
		}
		return Command{Kind: KindPing}
	case "HELP":
		return Command{Kind: KindHelp}
	case "QUIT", "EXIT":
		return Command{Kind: KindQuit}
	}
	return Command{Kind: KindInvalid, Reply: ErrUnknown}
}

// asciiUpper upper-cases ASCII letters only: commands are case-insensitive
// in ASCII, and no other character may stand in for a letter.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// firstLine is what a session hands to Parse: the input up to and
// including its first "\n", or all of it if there is none.
func firstLine(data []byte) []byte {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return data[:i+1]
	}
	return data
}

// leadingFields returns up to the first two blank-separated fields of a
// line without its terminator.
func leadingFields(line []byte) [][]byte {
	var fields [][]byte
	for len(fields) < 2 {
		line = bytes.TrimLeft(line, blanks)
		if len(line) == 0 {
			break
		}
		end := bytes.IndexAny(line, blanks)
		if end < 0 {
			end = len(line)
		}
		fields = append(fields, line[:end])
		line = line[end:]
	}
	return fields
}

// checkAnyInput checks the properties Parse keeps for any bytes at all,
// even a "line" with "\n" inside it.
func checkAnyInput(t *testing.T, data []byte) {
	t.Helper()
	before := bytes.Clone(data)
	cmd := Parse(data)
	if !bytes.Equal(data, before) {
		t.Fatalf("Parse modified its input %q into %q", before, data)
	}
	if _, ok := kindName(cmd.Kind); !ok {
		t.Fatalf("Parse(%q) returned undefined %s", data, describe(cmd))
	}
	if cmd.Kind == KindInvalid {
		if !strings.HasPrefix(cmd.Reply, ErrorPrefix) {
			t.Fatalf("Parse(%q) is invalid with reply %q, want an %q reply", data, cmd.Reply, ErrorPrefix)
		}
	} else if cmd.Reply != "" {
		t.Fatalf("Parse(%q) = %s: only invalid lines carry a reply", data, describe(cmd))
	}
	if cmd.Kind != KindSet && len(cmd.Message) != 0 {
		t.Fatalf("Parse(%q) = %s: only SET carries a message", data, describe(cmd))
	}
}

// checkLine checks one framed request line (at most one "\n", at its end)
// against every property of the contract and against referenceParse.
func checkLine(t *testing.T, line []byte) {
	t.Helper()
	checkAnyInput(t, line)
	cmd := Parse(line)
	body := TrimLineEnd(line)
	switch cmd.Kind {
	case KindSet:
		message := cmd.Message
		switch {
		case len(message) == 0:
			t.Fatalf("Parse(%q): SET with an empty message", line)
		case message[0] == ' ' || message[0] == '\t':
			t.Fatalf("Parse(%q): SET message %q starts with a blank", line, message)
		case bytes.IndexByte(message, '\n') >= 0:
			t.Fatalf("Parse(%q): SET message %q contains a newline", line, message)
		case !bytes.HasSuffix(body, message):
			t.Fatalf("Parse(%q): SET message %q is not a suffix of the line %q", line, message, body)
		}
		fallthrough
	case KindGet, KindDel:
		back, err := strconv.ParseInt(strconv.FormatInt(cmd.ID, 10), 10, 64)
		if err != nil || back != cmd.ID {
			t.Fatalf("Parse(%q): id %d does not round-trip: %d, %v", line, cmd.ID, back, err)
		}
		fields := leadingFields(body)
		if len(fields) < 2 {
			t.Fatalf("Parse(%q) = %s without an id field", line, describe(cmd))
		}
		fromInput, err := strconv.ParseInt(string(fields[1]), 10, 64)
		if err != nil || fromInput != cmd.ID {
			t.Fatalf("Parse(%q): id field %q parses to %d, %v; Parse says %d", line, fields[1], fromInput, err, cmd.ID)
		}
	}
	if want := referenceParse(line); !sameCommand(cmd, want) {
		t.Fatalf("Parse(%q) = %s, reference says %s", line, describe(cmd), describe(want))
	}
	// ParseID must agree with strconv on whatever stands in the id place.
	if fields := leadingFields(body); len(fields) == 2 {
		id, ok := ParseID(fields[1])
		ref, err := strconv.ParseInt(string(fields[1]), 10, 64)
		if ok != (err == nil) || (ok && id != ref) {
			t.Fatalf("ParseID(%q) = %d, %v; strconv.ParseInt = %d, %v", fields[1], id, ok, ref, err)
		}
	}
}

// checkSetRoundTrip checks that any id and any storable message survive
// being written as a SET line, with CRLF and with LF.
func checkSetRoundTrip(t *testing.T, id int64, message []byte) {
	t.Helper()
	if len(message) == 0 || message[0] == ' ' || message[0] == '\t' ||
		bytes.IndexByte(message, '\n') >= 0 || message[len(message)-1] == '\r' {
		return // not a message a SET line can carry exactly
	}
	for _, line := range []string{
		"SET " + strconv.FormatInt(id, 10) + " " + string(message) + "\r\n",
		"set\t" + strconv.FormatInt(id, 10) + "\t \t" + string(message) + "\n",
	} {
		cmd := Parse([]byte(line))
		if cmd.Kind != KindSet || cmd.ID != id || !bytes.Equal(cmd.Message, message) {
			t.Fatalf("Parse(%q) = %s, want SET id %d message %q", line, describe(cmd), id, message)
		}
	}
}

func FuzzParse(f *testing.F) {
	seeds := []struct {
		line    string
		id      int64
		message string
	}{
		{"SET 1 hello\r\n", 1, "hello"},
		{"set\t-5\t a  b \t\n", -5, "a  b \t"},
		{"SET 9223372036854775807 x\r\n", math.MaxInt64, "x"},
		{"SET -9223372036854775808 x\r\n", math.MinInt64, "\x00"},
		{"SET 9223372036854775808 x\r\n", 0, "9223372036854775808"},
		{"SET 1 a\x00b\xff\rc\r\r\n", 7, "a\x00b\xff\rc"},
		{"SET abc\r\n", 42, "NOT_FOUND"},
		{"GET 007\r\n", 7, "ERROR: id must be numeric"},
		{"GET abc def\r\n", -1, "héllo wörld"},
		{"DEL +7\n", 0, "SET 2 x"},
		{"PING x\r\n", 0, "\r\rx"},
		{" \t \r\n", 0, "x"},
		{"\u017fET 1 x\r\n", 1, "\u017f"},
		{"SET 1 a\nSET 2 b\n", 2, "b"},
		{"GET 1_000\r\n", 1000, "1_000"},
	}
	for _, s := range seeds {
		f.Add([]byte(s.line), s.id, []byte(s.message))
	}
	f.Fuzz(func(t *testing.T, data []byte, id int64, message []byte) {
		checkAnyInput(t, data)
		checkLine(t, firstLine(data))
		checkSetRoundTrip(t, id, message)
	})
}
