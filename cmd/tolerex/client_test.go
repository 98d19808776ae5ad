package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tolerex/tolerex/gateway/codec"
)

// clientTestServer is a scripted HaToKuSe server on a real listener: it
// parses every request with the codec and answers from a map, in prompt or
// no-prompt mode, the way the protocol documents it.
type clientTestServer struct {
	prompting bool
	// closeAfter, if positive, drops the connection without a reply when
	// that many requests after the handshake PING have been answered.
	closeAfter int
	// rejectFrom, if positive, makes SET of an id >= rejectFrom fail with
	// "ERROR: store full", as a gateway that cannot store does.
	rejectFrom int64

	mu       sync.Mutex
	messages map[int64]string
}

// start serves on 127.0.0.1 until the test ends and returns the address.
func (s *clientTestServer) start(t *testing.T) string {
	t.Helper()
	s.messages = make(map[int64]string)
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	var connsMu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns = append(conns, conn)
			connsMu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				s.serve(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = listener.Close()
		connsMu.Lock()
		for _, conn := range conns {
			_ = conn.Close()
		}
		connsMu.Unlock()
		wg.Wait()
	})
	return listener.Addr().String()
}

func (s *clientTestServer) serve(conn net.Conn) {
	reader := bufio.NewReader(conn)
	writer := bufio.NewWriter(conn)
	if s.prompting {
		writer.WriteString(codec.Banner + codec.LineEnd + codec.Prompt)
		if writer.Flush() != nil {
			return
		}
	}
	answered := -1 // the handshake PING does not count
	for {
		line, err := reader.ReadBytes('\n')
		if err != nil {
			return
		}
		if s.closeAfter > 0 && answered == s.closeAfter {
			writer.Flush()
			return
		}
		answered++
		command := codec.Parse(line)
		reply := s.reply(command)
		if command.Kind == codec.KindQuit {
			writer.WriteString(reply + codec.LineEnd)
			writer.Flush()
			return
		}
		if command.Kind != codec.KindEmpty {
			writer.WriteString(reply + codec.LineEnd)
		}
		if s.prompting {
			writer.WriteString(codec.Prompt)
		}
		// Flush once no complete request is waiting.
		buffered, _ := reader.Peek(reader.Buffered())
		if bytes.IndexByte(buffered, '\n') < 0 && writer.Flush() != nil {
			return
		}
	}
}

func (s *clientTestServer) reply(command codec.Command) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch command.Kind {
	case codec.KindInvalid:
		return command.Reply
	case codec.KindPing:
		return codec.ReplyPong
	case codec.KindHelp:
		return codec.Help
	case codec.KindQuit:
		return codec.ReplyBye
	case codec.KindSet:
		if s.rejectFrom > 0 && command.ID >= s.rejectFrom {
			return "ERROR: store full"
		}
		s.messages[command.ID] = string(command.Message)
		return codec.ReplyOK
	case codec.KindGet:
		if message, ok := s.messages[command.ID]; ok {
			return message
		}
		return codec.ReplyNotFound
	case codec.KindDel:
		if _, ok := s.messages[command.ID]; ok {
			delete(s.messages, command.ID)
			return codec.ReplyOK
		}
		return codec.ReplyNotFound
	}
	return ""
}

func (s *clientTestServer) stored(id int64) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	message, ok := s.messages[id]
	return message, ok
}

// runClientCommand runs "tolerex client args..." through the root command
// with input as standard input.
func runClientCommand(t *testing.T, input string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetIn(strings.NewReader(input))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"client"}, args...))
	err = root.Execute()
	return out.String(), errOut.String(), err
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatalf("open CSV: %v", err)
	}
	defer file.Close()
	rows, err := csv.NewReader(file).ReadAll()
	if err != nil {
		t.Fatalf("parse CSV %s: %v", path, err)
	}
	return rows
}

var bulkSummaryPattern = regexp.MustCompile(
	`^bulk SET ids -?\d+\.\.-?\d+: (\d+) ops in \d+\.\d{3} s, \d+ ops/s, avg RTT \d+\.\d{2} ms, p99 RTT \d+\.\d{2} ms(, (\d+) errors \(first: (.*)\))?$`)

func TestParseBulk(t *testing.T) {
	cases := []struct {
		line    string
		isBulk  bool
		count   int
		message string
		errPart string
	}{
		{line: "3 SET hello", isBulk: true, count: 3, message: "hello"},
		{line: "  10 set \t two  words \t", isBulk: true, count: 10, message: "two  words \t"},
		{line: "10000000 SET x", isBulk: true, count: 10_000_000, message: "x"},
		{line: "+2 SET x", isBulk: true, count: 2, message: "x"},
		{line: "0 SET x", isBulk: true, errPart: "out of range"},
		{line: "-1 SET x", isBulk: true, errPart: "out of range"},
		{line: "10000001 SET x", isBulk: true, errPart: "out of range"},
		{line: "99999999999999999999 SET x", isBulk: true, errPart: "not a whole number"},
		{line: "abc SET", isBulk: true, errPart: `"abc" is not a whole number`},
		{line: "1.5 SET x", isBulk: true, errPart: "not a whole number"},
		{line: "5 SET", isBulk: true, errPart: "needs a message"},
		{line: "5 SET   ", isBulk: true, errPart: "needs a message"},
		{line: "5 GET 1", isBulk: true, errPart: "N SET <message>"},
		{line: "5", isBulk: true, errPart: "N SET <message>"},
		{line: "SET 5 hello", isBulk: false},
		{line: "SET SET x", isBulk: false},
		{line: "get 1", isBulk: false},
		{line: "PING", isBulk: false},
		{line: "quit", isBulk: false},
		{line: "BOGUS 1", isBulk: false},
		{line: "", isBulk: false},
		{line: "   ", isBulk: false},
	}
	for _, tc := range cases {
		request, isBulk, err := parseBulk([]byte(tc.line))
		if isBulk != tc.isBulk {
			t.Errorf("parseBulk(%q): isBulk = %v, want %v", tc.line, isBulk, tc.isBulk)
			continue
		}
		switch {
		case tc.errPart != "":
			if err == nil || !strings.Contains(err.Error(), tc.errPart) {
				t.Errorf("parseBulk(%q): err = %v, want one mentioning %q", tc.line, err, tc.errPart)
			}
		case err != nil:
			t.Errorf("parseBulk(%q): unexpected error %v", tc.line, err)
		case isBulk && (request.Count != tc.count || string(request.Message) != tc.message):
			t.Errorf("parseBulk(%q) = %d %q, want %d %q", tc.line, request.Count, request.Message, tc.count, tc.message)
		}
	}
}

func TestCSVRecorder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ops.csv")
	at := time.Date(2025, 3, 4, 5, 6, 7, 891011121, time.FixedZone("CET", 3600))

	recorder, err := openCSVRecorder(path, "client-a")
	if err != nil {
		t.Fatal(err)
	}
	if err := recorder.Record(csvRow{At: at, Operation: opSet, Count: 1, Bytes: 11, RTT: 1234567 * time.Nanosecond, Status: statusOK}); err != nil {
		t.Fatal(err)
	}
	if err := recorder.Close(); err != nil {
		t.Fatal(err)
	}
	// A second client appends to the same file without a second header.
	recorder, err = openCSVRecorder(path, "client, \"b\"")
	if err != nil {
		t.Fatal(err)
	}
	if err := recorder.Record(csvRow{At: at, Operation: opBulkSet, Count: 1000, Bytes: 5890, RTT: 2 * time.Second, Status: statusError}); err != nil {
		t.Fatal(err)
	}
	if err := recorder.Close(); err != nil {
		t.Fatal(err)
	}

	want := [][]string{
		{"Timestamp", "ClientID", "Operation", "Count", "Bytes", "RTT_us", "Status"},
		{"2025-03-04T04:06:07.891011121Z", "client-a", "SET", "1", "11", "1234", "OK"},
		{"2025-03-04T04:06:07.891011121Z", "client, \"b\"", "BULK_SET", "1000", "5890", "2000000", "ERROR"},
	}
	rows := readCSV(t, path)
	if len(rows) != len(want) {
		t.Fatalf("CSV has %d rows, want %d: %q", len(rows), len(want), rows)
	}
	for i := range want {
		if strings.Join(rows[i], "|") != strings.Join(want[i], "|") {
			t.Errorf("row %d = %q, want %q", i, rows[i], want[i])
		}
	}

	// A file that already has content is not new: no header is added.
	existing := filepath.Join(t.TempDir(), "existing.csv")
	if err := os.WriteFile(existing, []byte("earlier,row\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	recorder, err = openCSVRecorder(existing, "c")
	if err != nil {
		t.Fatal(err)
	}
	if err := recorder.Close(); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(existing); string(data) != "earlier,row\n" {
		t.Fatalf("existing file changed to %q", data)
	}

	if _, err := openCSVRecorder(filepath.Join(t.TempDir(), "missing", "x.csv"), "c"); err == nil {
		t.Fatal("openCSVRecorder in a missing directory succeeded")
	}
}

func TestBulkSummary(t *testing.T) {
	result := bulkResult{FirstID: 7, Count: 2000, Elapsed: 500 * time.Millisecond, MeanRTT: 1234 * time.Microsecond, P99RTT: 5 * time.Millisecond}
	if got, want := result.summary(), "bulk SET ids 7..2006: 2000 ops in 0.500 s, 4000 ops/s, avg RTT 1.23 ms, p99 RTT 5.00 ms"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
	result.Errors, result.FirstError = 3, "ERROR: store full"
	if got, want := result.summary(), "bulk SET ids 7..2006: 2000 ops in 0.500 s, 4000 ops/s, avg RTT 1.23 ms, p99 RTT 5.00 ms, 3 errors (first: ERROR: store full)"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
}

func TestClientSessionScript(t *testing.T) {
	server := &clientTestServer{prompting: true}
	addr := server.start(t)
	csvPath := filepath.Join(t.TempDir(), "client.csv")
	script := strings.Join([]string{
		"SET 1 hello world",
		"GET 1",
		"GET 2",
		"",
		"DEL 1",
		"del 1",
		"PING",
		"BOGUS",
		"SET x y",
		"0 SET x",
		"abc SET",
		"3 SET msg", // ids 2..4: past id 1, which this session SET
		"2 SET msg", // ids 5..6
		"GET 1",
		"GET 2",
		"GET 6",
		"GET 7",
		"SET 9 " + codec.Prompt + "not a prompt",
		"GET 9",
		"help",
		"QUIT",
		"PING",
	}, "\n") + "\n"
	stdout, stderr, err := runClientCommand(t, script, "--addr", addr, "--csv="+csvPath, "--id", "tester")
	if err != nil {
		t.Fatalf("tolerex client: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	want := []string{
		"OK", "hello world", "NOT_FOUND", "OK", "NOT_FOUND", "PONG",
		codec.ErrUnknown, codec.ErrIDNotNumeric,
		"bulk 3", "bulk 2",
		"NOT_FOUND", "msg_2", "msg_6", "NOT_FOUND",
		"OK", codec.Prompt + "not a prompt",
		codec.Help, codec.ReplyBye,
	}
	if len(lines) != len(want) {
		t.Fatalf("stdout has %d lines, want %d:\n%s", len(lines), len(want), stdout)
	}
	for i, line := range lines {
		if count, isBulk := strings.CutPrefix(want[i], "bulk "); isBulk {
			match := bulkSummaryPattern.FindStringSubmatch(line)
			if match == nil || match[1] != count || match[2] != "" {
				t.Errorf("line %d = %q, want a clean summary of %s ops", i, line, count)
			}
			continue
		}
		if line != want[i] {
			t.Errorf("line %d = %q, want %q", i, line, want[i])
		}
	}
	for _, part := range []string{"out of range", `"abc" is not a whole number`} {
		if !strings.Contains(stderr, part) {
			t.Errorf("stderr lacks %q:\n%s", part, stderr)
		}
	}
	for id := range int64(8) {
		message, ok := server.stored(id)
		if wantMsg := "msg_" + strconv.FormatInt(id, 10); id >= 2 && id <= 6 && (!ok || message != wantMsg) {
			t.Errorf("server holds %q, %v under id %d, want %s", message, ok, id, wantMsg)
		} else if (id < 2 || id > 6) && ok {
			t.Errorf("server holds %q under id %d, outside the bulk ids 2..6", message, id)
		}
	}

	rows := readCSV(t, csvPath)
	wantRows := [][]string{ // Operation, Count, Bytes, Status
		{"SET", "1", "11", "OK"},
		{"GET", "1", "0", "OK"},
		{"GET", "1", "0", "NOT_FOUND"},
		{"DEL", "1", "0", "OK"},
		{"DEL", "1", "0", "NOT_FOUND"},
		{"PING", "1", "0", "OK"},
		{"SET", "1", "0", "ERROR"},
		{"BULK_SET", "3", "15", "OK"},
		{"BULK_SET", "2", "10", "OK"},
		{"GET", "1", "0", "NOT_FOUND"},
		{"GET", "1", "0", "OK"},
		{"GET", "1", "0", "OK"},
		{"GET", "1", "0", "NOT_FOUND"},
		{"SET", "1", "21", "OK"},
		{"GET", "1", "0", "OK"},
	}
	if len(rows) != len(wantRows)+1 || strings.Join(rows[0], ",") != strings.Join(csvHeader(), ",") {
		t.Fatalf("CSV rows:\n%q", rows)
	}
	for i, row := range rows[1:] {
		stamp, err := time.Parse(time.RFC3339Nano, row[0])
		if err != nil || stamp.Location() != time.UTC || time.Since(stamp) > time.Minute {
			t.Errorf("row %d timestamp %q: %v", i, row[0], err)
		}
		if row[1] != "tester" {
			t.Errorf("row %d client id %q", i, row[1])
		}
		if got := []string{row[2], row[3], row[4], row[6]}; strings.Join(got, ",") != strings.Join(wantRows[i], ",") {
			t.Errorf("row %d = %q, want %q", i, got, wantRows[i])
		}
		if rtt, err := strconv.ParseInt(row[5], 10, 64); err != nil || rtt < 0 || rtt > int64(time.Minute/time.Microsecond) {
			t.Errorf("row %d RTT_us %q", i, row[5])
		}
	}
}

func TestClientMeasureAndEndOfInput(t *testing.T) {
	server := &clientTestServer{prompting: false}
	addr := server.start(t)
	// The last line has no newline; the end of the input ends the session.
	stdout, stderr, err := runClientCommand(t, "SET 1 a\nPING", "--addr", addr, "--measure")
	if err != nil {
		t.Fatalf("tolerex client: %v\n%s%s", err, stdout, stderr)
	}
	if !regexp.MustCompile(`^OK\n\(\d+\.\d\d ms\)\nPONG\n\(\d+\.\d\d ms\)\n$`).MatchString(stdout) {
		t.Fatalf("stdout with --measure:\n%s", stdout)
	}
}

func TestClientBulkPipelinesAndAdvancesOffset(t *testing.T) {
	for _, prompting := range []bool{true, false} {
		server := &clientTestServer{prompting: prompting}
		addr := server.start(t)
		const n = 20000
		script := strconv.Itoa(n) + " SET big\n2 SET next\nGET 999\n"
		stdout, stderr, err := runClientCommand(t, script, "--addr", addr, "--offset", "1000")
		if err != nil {
			t.Fatalf("tolerex client: %v\n%s%s", err, stdout, stderr)
		}
		lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("stdout:\n%s", stdout)
		}
		if match := bulkSummaryPattern.FindStringSubmatch(lines[0]); match == nil || match[1] != strconv.Itoa(n) || match[2] != "" {
			t.Errorf("bulk summary %q", lines[0])
		}
		if lines[2] != codec.ReplyNotFound {
			t.Errorf("GET 999 below the offset = %q, want NOT_FOUND", lines[2])
		}
		for _, id := range []int64{1000, 1001, 1000 + n/2, 1000 + n - 1} {
			if message, ok := server.stored(id); !ok || message != "big_"+strconv.FormatInt(id, 10) {
				t.Errorf("id %d holds %q, %v", id, message, ok)
			}
		}
		for _, id := range []int64{1000 + n, 1000 + n + 1} {
			if message, ok := server.stored(id); !ok || message != "next_"+strconv.FormatInt(id, 10) {
				t.Errorf("second bulk run: id %d holds %q, %v", id, message, ok)
			}
		}
	}
}

// TestClientBulkStartsPastSetIDs: a bulk run never overwrites an id this
// session SET, whatever --offset says; its summary names its ids.
func TestClientBulkStartsPastSetIDs(t *testing.T) {
	server := &clientTestServer{prompting: false}
	addr := server.start(t)
	script := "SET 5 mine\n3 SET b\nSET 100 x\nSET -4 low\n2 SET c\nGET 5\nGET 100\n" +
		"SET 9223372036854775807 last\n1 SET none\nPING\n"
	stdout, stderr, err := runClientCommand(t, script, "--addr", addr, "--offset", "3")
	if err != nil {
		t.Fatalf("tolerex client: %v\n%s%s", err, stdout, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	want := []string{"OK", "bulk SET ids 6..8: ", "OK", "OK", "bulk SET ids 101..102: ", "mine", "x", "OK", "PONG"}
	if len(lines) != len(want) {
		t.Fatalf("stdout has %d lines, want %d:\n%s", len(lines), len(want), stdout)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) || (!strings.HasSuffix(w, ": ") && lines[i] != w) {
			t.Errorf("line %d = %q, want %q", i, lines[i], w)
		}
	}
	if !strings.Contains(stderr, "no 1 ids left") {
		t.Errorf("bulk run past the largest id: stderr %q, want an error", stderr)
	}
	for id, want := range map[int64]string{5: "mine", 6: "b_6", 8: "b_8", 100: "x", 101: "c_101", 102: "c_102", 3: "", 9: "", 103: ""} {
		if got, ok := server.stored(id); got != want || ok != (want != "") {
			t.Errorf("id %d holds %q (%v), want %q", id, got, ok, want)
		}
	}
}

func TestClientBulkCountsErrorReplies(t *testing.T) {
	server := &clientTestServer{prompting: true, rejectFrom: 7}
	addr := server.start(t)
	csvPath := filepath.Join(t.TempDir(), "bulk.csv")
	stdout, stderr, err := runClientCommand(t, "10 SET x\n", "--addr", addr, "--csv="+csvPath, "--id", "b")
	if err != nil {
		t.Fatalf("tolerex client: %v\n%s%s", err, stdout, stderr)
	}
	match := bulkSummaryPattern.FindStringSubmatch(strings.TrimSuffix(stdout, "\n"))
	if match == nil || match[1] != "10" || match[3] != "3" || match[4] != "ERROR: store full" {
		t.Fatalf("bulk summary with errors: %q", stdout)
	}
	rows := readCSV(t, csvPath)
	if len(rows) != 2 || rows[1][2] != opBulkSet || rows[1][3] != "10" || rows[1][4] != "30" || rows[1][6] != statusError {
		t.Fatalf("CSV rows: %q", rows)
	}
}

func TestClientDefaultCSVFile(t *testing.T) {
	server := &clientTestServer{prompting: true}
	addr := server.start(t)
	dir := t.TempDir()
	t.Chdir(dir)
	if _, _, err := runClientCommand(t, "PING\n", "--addr", addr, "--csv", "--id", "node7"); err != nil {
		t.Fatalf("tolerex client --csv: %v", err)
	}
	rows := readCSV(t, filepath.Join(dir, "tolerex-client-node7.csv"))
	if len(rows) != 2 || rows[1][1] != "node7" || rows[1][2] != opPing {
		t.Fatalf("default CSV file rows: %q", rows)
	}
}

func TestClientLostConnection(t *testing.T) {
	cases := []struct {
		name   string
		script string
		output string
	}{
		{"single commands", "PING\nPING\nPING\nPING\n", "PONG\nPONG\n"},
		{"bulk", "PING\n5000 SET x\nPING\n", "PONG\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			server := &clientTestServer{prompting: true, closeAfter: 2}
			addr := server.start(t)
			stdout, _, err := runClientCommand(t, tc.script, "--addr", addr)
			if err == nil || !strings.Contains(err.Error(), "lost") {
				t.Fatalf("err = %v, want a lost connection", err)
			}
			if stdout != tc.output {
				t.Fatalf("stdout = %q, want %q", stdout, tc.output)
			}
		})
	}
}

func TestClientCannotConnect(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	listener.Close()
	if _, _, err := runClientCommand(t, "PING\n", "--addr", addr); err == nil {
		t.Fatal("client connected to a closed port")
	}
}
