package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The bad-input table: malformed, foreign and borderline requests, each
// sent on a fresh raw TCP connection to a gateway started with --no-prompt
// and --max-message-bytes 1000. docs/protocol.md ("Malformed input")
// shows the same table in the same order; TestBadInputDocumented checks
// that the two agree.

const (
	badInputMaxMessage = 1000
	badInputMaxLine    = badInputMaxMessage + 64

	wireLineTooLong    = "ERROR: line too long (max 1064 bytes)\r\n"
	wireMessageTooLong = "ERROR: message too long (max 1000 bytes)\r\n"
	wireIncompleteLine = "ERROR: incomplete line at end of input (no newline); not run\r\n"

	// badInputDoc is docs/protocol.md, relative to this package.
	badInputDoc = "../docs/protocol.md"
	// badInputSection heads the table in badInputDoc.
	badInputSection = "## Malformed input"
)

// badInputRow is one malformed input and what the server does with it.
type badInputRow struct {
	name  string
	input []byte
	// shown is the Go expression the doc shows instead of the quoted
	// input, for inputs too long to print.
	shown string
	// wantReply is every byte the server writes for input, "\r\n"
	// included; empty if it writes nothing.
	wantReply string
	// closes says the server closes the connection after wantReply.
	closes bool
	// halfClose shuts down the client's write side after input.
	halfClose bool
	// note is the doc's one-line comment.
	note string
	// then are exchanges checked afterwards (on the same connection if it
	// stays open, else on a new one), typically that a rejected SET
	// stored nothing.
	then []exchange
}

// notFound is a GET of each id that must find nothing.
func notFound(ids ...string) []exchange {
	out := make([]exchange, 0, len(ids))
	for _, id := range ids {
		out = append(out, exch("GET "+id+"\r\n", "NOT_FOUND"))
	}
	return out
}

// c0Controls is every byte 0x01-0x1f except tab, LF and CR.
func c0Controls() []byte {
	var b []byte
	for c := byte(0x01); c < 0x20; c++ {
		if c != '\t' && c != '\n' && c != '\r' {
			b = append(b, c)
		}
	}
	return b
}

// badInputRows is the table. Ids 700-799 are used by rows that must not
// create them; each row's follow-up SET uses an id from 9000.
func badInputRows() []badInputRow {
	const (
		setUsage   = wireSetUsage + "\r\n"
		getUsage   = wireGetUsage + "\r\n"
		delUsage   = wireDelUsage + "\r\n"
		pingUsage  = wirePingUsage + "\r\n"
		notNumeric = wireNotNumeric + "\r\n"
		unknown    = wireUnknown + "\r\n"
		bye        = "Bye\r\n"
	)
	line := func(s string) []byte { return []byte(s) }
	return []badInputRow{
		// Wrong arity; blank lines.
		{name: "set-alone", input: line("SET\r\n"), wantReply: setUsage},
		{name: "set-id-only", input: line("SET 701\r\n"), wantReply: setUsage, then: notFound("701")},
		{name: "set-empty-message", input: line("SET 702 \r\n"), wantReply: setUsage, then: notFound("702"),
			note: "a message is never empty"},
		{name: "set-only-blanks-after-id", input: line("SET 703 \t \t\r\n"), wantReply: setUsage, then: notFound("703"),
			note: "blanks after the id are separators, not a message"},
		{name: "get-alone", input: line("GET\r\n"), wantReply: getUsage},
		{name: "get-two-ids", input: line("GET 704 705\r\n"), wantReply: getUsage},
		{name: "del-alone", input: line("DEL\r\n"), wantReply: delUsage},
		{name: "del-two-ids", input: line("DEL 704 705\r\n"), wantReply: delUsage},
		{name: "ping-with-argument", input: line("PING 1\r\n"), wantReply: pingUsage},
		{name: "crlf-only", input: line("\r\n"), wantReply: "", note: "a blank line gets no reply"},
		{name: "lf-only", input: line("\n"), wantReply: ""},
		{name: "blanks-only", input: line(" \t \r\n"), wantReply: ""},

		// Bad ids.
		{name: "id-letters", input: line("SET abc x\r\n"), wantReply: notNumeric},
		{name: "id-decimal", input: line("GET 7.5\r\n"), wantReply: notNumeric},
		{name: "id-hex", input: line("SET 0x2C6 x\r\n"), wantReply: notNumeric, then: notFound("710", "0"),
			note: "0x2C6 is 710: neither 710 nor 0 is created"},
		{name: "id-exponent", input: line("SET 7e2 x\r\n"), wantReply: notNumeric, then: notFound("700", "7")},
		{name: "id-underscore", input: line("SET 7_11 x\r\n"), wantReply: notNumeric, then: notFound("711", "7")},
		{name: "id-minus-only", input: line("GET -\r\n"), wantReply: notNumeric},
		{name: "id-plus-only", input: line("DEL +\r\n"), wantReply: notNumeric},
		{name: "id-double-sign", input: line("SET --712 x\r\n"), wantReply: notNumeric, then: notFound("712", "-712")},
		{name: "id-trailing-sign", input: line("SET 713- x\r\n"), wantReply: notNumeric, then: notFound("713", "-713")},
		{name: "id-arabic-indic-digit", input: line("GET \u0661\r\n"), wantReply: notNumeric,
			note: "only ASCII digits count"},
		{name: "id-fullwidth-digits", input: line("SET \uff17\uff11\uff14 x\r\n"), wantReply: notNumeric, then: notFound("714")},
		{name: "id-20-digits", input: line("SET 18446744073709551617 x\r\n"), wantReply: notNumeric, then: notFound("1"),
			note: "2^64+1: does not wrap to id 1"},
		{name: "id-1000-digits", input: line("GET " + strings.Repeat("9", 1000) + "\r\n"),
			shown: `"GET " + strings.Repeat("9", 1000) + "\r\n"`, wantReply: notNumeric},
		{name: "id-int64-max-plus-one", input: line("SET 9223372036854775808 x\r\n"), wantReply: notNumeric,
			then: notFound("-9223372036854775808", "9223372036854775807"), note: "no wrap-around, no clamping"},
		{name: "id-int64-min-minus-one", input: line("SET -9223372036854775809 x\r\n"), wantReply: notNumeric,
			then: notFound("9223372036854775807", "-9223372036854775808")},
		{name: "id-990-leading-zeros", input: line("GET " + strings.Repeat("0", 990) + "715\r\n"),
			shown: `"GET " + strings.Repeat("0", 990) + "715\r\n"`, wantReply: "NOT_FOUND\r\n",
			note: "valid: id 715, however many leading zeros"},

		// Control characters.
		{name: "nul-line", input: line("\x00\r\n"), wantReply: unknown, note: "NUL is an ordinary byte"},
		{name: "nul-before-command", input: line("\x00PING\r\n"), wantReply: unknown},
		{name: "nul-in-command", input: line("PI\x00NG\r\n"), wantReply: unknown},
		{name: "nul-in-id", input: line("SET 71\x006 x\r\n"), wantReply: notNumeric, then: notFound("716", "71", "6")},
		{name: "nul-after-id", input: line("GET 716\x00\r\n"), wantReply: notNumeric},
		{name: "c0-controls", input: append(c0Controls(), "\r\n"...), wantReply: unknown,
			note: "0x01-0x1f except tab, LF, CR"},
		{name: "del-byte", input: line("\x7f\r\n"), wantReply: unknown},
		{name: "del-byte-after-command", input: line("PING\x7f\r\n"), wantReply: unknown},
		{name: "vertical-tab-separators", input: line("SET\v717\vx\r\n"), wantReply: unknown, then: notFound("717"),
			note: "only space and tab separate fields"},
		{name: "form-feed-separator", input: line("GET\f717\r\n"), wantReply: unknown},
		{name: "vertical-tab-after-id", input: line("SET 718\vx\r\n"), wantReply: setUsage, then: notFound("718"),
			note: "`718\\vx` is one field, so the message is missing"},
		{name: "esc-arrow-keys", input: line("\x1b[A\x1b[B\r\n"), wantReply: unknown},
		{name: "esc-arrow-then-command", input: line("\x1b[APING\r\n"), wantReply: unknown},
		{name: "ctrl-c", input: line("\x03\r\n"), wantReply: unknown, note: "no interrupt: an ordinary byte"},
		{name: "ctrl-c-after-command", input: line("PING\x03\r\n"), wantReply: unknown},
		{name: "backspace-in-command", input: line("PINX\bG\r\n"), wantReply: unknown,
			note: "backspace does not edit the line"},
		{name: "backspace-in-id", input: line("GET 719\b\r\n"), wantReply: notNumeric},

		// Invalid UTF-8, BOM, non-ASCII blanks.
		{name: "invalid-utf8-command", input: line("S\xffT 720 x\r\n"), wantReply: unknown, then: notFound("720")},
		{name: "invalid-utf8-id", input: line("GET \xff\xfe\r\n"), wantReply: notNumeric},
		{name: "invalid-utf8-inside-id", input: line("SET 72\xc31 x\r\n"), wantReply: notNumeric, then: notFound("721", "72")},
		{name: "utf8-bom-before-command", input: line("\ufeffPING\r\n"), wantReply: unknown},
		{name: "nbsp-separator", input: line("SET\u00a0722 x\r\n"), wantReply: unknown, then: notFound("722"),
			note: "non-ASCII spaces do not separate"},

		// Carriage returns.
		{name: "lone-cr-between-commands", input: line("PING\rPING\r\n"), wantReply: unknown,
			note: "a lone CR does not end a line: this is one line"},
		{name: "lone-cr-before-command", input: line("\rPING\r\n"), wantReply: unknown},
		{name: "cr-cr-lf", input: line("\r\r\n"), wantReply: unknown, note: "only one CR belongs to the terminator"},
		{name: "command-cr-cr-lf", input: line("PING\r\r\n"), wantReply: unknown},

		// Other protocols.
		{name: "telnet-iac", input: line("\xff\xf4\xff\xfd\x06\r\n"), wantReply: unknown,
			note: "IAC IP, IAC DO TIMING-MARK: no telnet negotiation"},
		{name: "telnet-iac-before-command", input: line("\xff\xfb\x1f\xff\xfb\x20PING\r\n"), wantReply: unknown,
			note: "negotiation bytes glued to the first command spoil it"},
		{name: "http-request", input: line("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), wantReply: getUsage + unknown,
			note: "three lines: GET with two fields, an unknown command, a blank line"},
		{name: "tls-client-hello", input: line("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n"), wantReply: unknown,
			note: "a ClientHello prefix cut at an LF"},
		{name: "redis-resp", input: line("*1\r\n$4\r\nPING\r\n"), wantReply: unknown + unknown + "PONG\r\n",
			note: "three lines; the third is a valid PING"},

		// Pipelined garbage between valid commands, in one write.
		{name: "pipelined-garbage", input: line("SET 723 a\r\n\x00\x01garbage\r\nGET 723\r\nGET x\r\nPING\r\n"),
			wantReply: "OK\r\n" + unknown + "a\r\n" + notNumeric + "PONG\r\n", note: "one reply per line, in order"},
		{name: "pipelined-errors", input: line("SET\r\nGET\r\nDEL\r\nPING x\r\nFOO\r\nGET 1.5\r\nSET 724 b\r\nGET 724\r\n"),
			wantReply: setUsage + getUsage + delUsage + pingUsage + unknown + notNumeric + "OK\r\nb\r\n"},

		// Sizes.
		{name: "line-at-limit", input: line("PING" + strings.Repeat(" ", badInputMaxLine-6) + "\r\n"),
			shown: `"PING" + strings.Repeat(" ", 1058) + "\r\n"`, wantReply: "PONG\r\n",
			note: "1064 bytes with the terminator: accepted"},
		{name: "line-too-long", input: line("PING" + strings.Repeat(" ", badInputMaxLine-5) + "\r\n"),
			shown: `"PING" + strings.Repeat(" ", 1059) + "\r\n"`, wantReply: wireLineTooLong,
			note: "1065 bytes"},
		{name: "set-line-too-long", input: line("SET 725 " + strings.Repeat("x", 1100) + "\r\n"),
			shown: `"SET 725 " + strings.Repeat("x", 1100) + "\r\n"`, wantReply: wireLineTooLong, then: notFound("725")},
		{name: "set-line-100k-nul", input: line("SET 726 " + strings.Repeat("\x00", 100_000) + "\r\n"),
			shown: `"SET 726 " + strings.Repeat("\x00", 100000) + "\r\n"`, wantReply: wireLineTooLong, then: notFound("726"),
			note: "discarded without being buffered whole"},
		{name: "message-too-long", input: line("SET 727 " + strings.Repeat("y", badInputMaxMessage+1) + "\r\n"),
			shown: `"SET 727 " + strings.Repeat("y", 1001) + "\r\n"`, wantReply: wireMessageTooLong, then: notFound("727"),
			note: "the line fits, the message does not"},

		// A partial line at EOF (the client half-closes).
		{name: "partial-set-at-eof", input: line("SET 728 tail"), halfClose: true, wantReply: wireIncompleteLine, closes: true,
			then: notFound("728"), note: "a final line without LF is not run: it may be a truncated SET"},
		{name: "partial-ping-at-eof", input: line("PING\r\nPING"), halfClose: true, wantReply: "PONG\r\n" + wireIncompleteLine, closes: true,
			note: "complete lines before it are run"},
		{name: "partial-garbage-at-eof", input: line("GARBAGE"), halfClose: true, wantReply: wireIncompleteLine, closes: true},
		{name: "partial-too-long-at-eof", input: line("SET 729 " + strings.Repeat("x", 2000)), halfClose: true,
			shown: `"SET 729 " + strings.Repeat("x", 2000)`, wantReply: wireLineTooLong, closes: true, then: notFound("729"),
			note: "too long wins over incomplete"},
		{name: "partial-40k-at-eof", input: line("PING\r\nSET 730 " + strings.Repeat("x", 40_000)), halfClose: true,
			shown: `"PING\r\nSET 730 " + strings.Repeat("x", 40000)`, wantReply: "PONG\r\n" + wireLineTooLong, closes: true,
			then: notFound("730")},

		// QUIT and EXIT.
		{name: "quit-with-arguments", input: line("QUIT now please\r\n"), wantReply: bye, closes: true,
			note: "arguments are ignored"},
		{name: "quit-with-garbage-arguments", input: line("QUIT \x00\xff\r\n"), wantReply: bye, closes: true},
		{name: "exit-lower-case", input: line("exit\r\n"), wantReply: bye, closes: true},
		{name: "quit-then-set", input: line("quit\r\nSET 731 after\r\n"), wantReply: bye, closes: true, then: notFound("731"),
			note: "lines after QUIT are not executed"},
	}
}

// TestBadInput sends every row of the bad-input table on a fresh
// connection and checks the exact reply; then that the connection still
// serves PING, SET and GET, or that the server closed it, and that the
// row changed nothing it should not have.
func TestBadInput(t *testing.T) {
	rows := badInputRows()
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2, NoPrompt: true,
		GatewayArgs: []string{"--max-message-bytes", strconv.Itoa(badInputMaxMessage)}})
	c.DumpLogsOnFailure(t)
	logProblemsOnFailure(t, c)
	c.Start(t)

	for i, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			checkBadInputRow(t, c.ClientAddr, row, 9000+int64(i))
		})
	}
	if exited, err := c.Gateway.Exited(); exited {
		t.Fatalf("the gateway exited during the table: %v", err)
	}
}

// checkBadInputRow runs one row; followUpID is a fresh id for the check
// that an open connection still stores and reads messages.
func checkBadInputRow(t *testing.T, addr string, row badInputRow, followUpID int64) {
	t.Helper()
	w := dialWire(t, addr, false)
	w.send(string(row.input))
	if row.halfClose {
		if err := w.conn.CloseWrite(); err != nil {
			t.Fatalf("half-close: %v", err)
		}
	}
	w.expect(row.wantReply)
	if row.closes {
		w.expectEOF()
		w = dialWire(t, addr, false)
		w.do(exch("PING\r\n", "PONG"))
	} else {
		id := strconv.FormatInt(followUpID, 10)
		w.do(
			exch("PING\r\n", "PONG"),
			exch("SET "+id+" ok\r\n", "OK"),
			exch("GET "+id+"\r\n", "ok"),
		)
	}
	w.do(row.then...)
}

// TestBadInputDocumented checks that the table in docs/protocol.md
// ("Malformed input") is the rendering of badInputRows, row for row and
// cell for cell (padding around cells does not matter).
func TestBadInputDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.FromSlash(badInputDoc))
	if err != nil {
		t.Fatalf("read the protocol doc: %v", err)
	}
	got, err := docTable(doc, badInputSection)
	if err != nil {
		t.Fatal(err)
	}
	want := renderBadInputTable(badInputRows())
	if len(got) != len(want) {
		t.Errorf("the doc table has %d lines, the test table %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if i == 1 { // the separator line
			if !isTableSeparator(got[i]) {
				t.Errorf("doc table line 2 is not a separator: %s", got[i])
			}
			continue
		}
		if !slices.Equal(tableCells(got[i]), tableCells(want[i])) {
			t.Errorf("doc table line %d differs:\n got: %s\nwant: %s", i+1, got[i], want[i])
		}
	}
	if t.Failed() {
		t.Logf("the table the doc should hold:\n%s", strings.Join(want, "\n"))
	}
}

// The header and separator lines of the doc table.
const (
	badInputTableHeader    = "| # | Name | Input | Reply | Connection | Note |"
	badInputTableSeparator = "|---|------|-------|-------|------------|------|"
)

// renderBadInputTable renders rows as the doc's Markdown table, header
// included.
func renderBadInputTable(rows []badInputRow) []string {
	out := []string{badInputTableHeader, badInputTableSeparator}
	for i, row := range rows {
		input := row.shown
		if input == "" {
			input = strconv.QuoteToASCII(string(row.input))
		}
		conn := "open"
		switch {
		case row.closes && row.halfClose:
			conn = "closed at EOF"
		case row.closes:
			conn = "closed"
		}
		cells := []string{strconv.Itoa(i + 1), row.name, "`" + escapePipes(input) + "`",
			"`" + escapePipes(strconv.Quote(row.wantReply)) + "`", conn, row.note}
		out = append(out, strings.TrimRight("| "+strings.Join(cells, " | "), " ")+" |")
	}
	return out
}

// tableCells splits a Markdown table line into its trimmed cells; an
// escaped "\|" does not split.
func tableCells(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "|")
	if strings.HasSuffix(line, "|") && !strings.HasSuffix(line, `\|`) {
		line = line[:len(line)-1]
	}
	var cells []string
	var cell strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cell.WriteString(`\|`)
			i++
		case line[i] == '|':
			cells = append(cells, strings.TrimSpace(cell.String()))
			cell.Reset()
		default:
			cell.WriteByte(line[i])
		}
	}
	return append(cells, strings.TrimSpace(cell.String()))
}

// isTableSeparator reports whether line is a Markdown table's separator.
func isTableSeparator(line string) bool {
	for _, cell := range tableCells(line) {
		if cell == "" || strings.Trim(cell, "-:") != "" {
			return false
		}
	}
	return true
}

// escapePipes escapes "|" so it does not split a Markdown table cell.
func escapePipes(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// docTable returns the lines of the first Markdown table after the
// heading line section in doc.
func docTable(doc []byte, section string) ([]string, error) {
	lines := strings.Split(string(doc), "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimRight(l, " \r") == section {
			start = i + 1
			break
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("no %q section in the doc", section)
	}
	var table []string
	for _, l := range lines[start:] {
		l = strings.TrimRight(l, " \r")
		switch {
		case strings.HasPrefix(l, "|"):
			table = append(table, l)
		case len(table) > 0:
			return table, nil
		case strings.HasPrefix(l, "## "):
			return nil, fmt.Errorf("no table in the %q section", section)
		}
	}
	if len(table) == 0 {
		return nil, fmt.Errorf("no table in the %q section", section)
	}
	return table, nil
}

// TestBadInputRowsWellFormed guards the table itself: unique names, and
// an input that ends its last line unless the row half-closes (else the
// follow-up PING would join that line).
func TestBadInputRowsWellFormed(t *testing.T) {
	rows := badInputRows()
	if len(rows) < 40 {
		t.Errorf("%d rows, want at least 40", len(rows))
	}
	seen := make(map[string]bool)
	for _, row := range rows {
		if seen[row.name] {
			t.Errorf("duplicate row name %q", row.name)
		}
		seen[row.name] = true
		if !row.halfClose && !bytes.HasSuffix(row.input, []byte("\n")) {
			t.Errorf("row %s: input does not end in LF and the row does not half-close", row.name)
		}
		if row.halfClose && !row.closes {
			t.Errorf("row %s half-closes but does not expect the server to close", row.name)
		}
	}
}
