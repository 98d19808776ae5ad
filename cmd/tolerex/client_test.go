package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
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
	// closeIdle makes the drop happen right after the closeAfter-th reply
	// rather than when the next request arrives.
	closeIdle bool
	// dies makes the drop kill the whole server, as a gateway process that
	// dies: it stops listening (new connections are refused) and closes
	// every connection. dead is closed then.
	dies bool
	dead chan struct{}
	// rejectFrom, if positive, makes SET of an id >= rejectFrom fail with
	// "ERROR: store full", as a gateway that cannot store does.
	rejectFrom int64
	// unavailable, if set, is the reason every SET, GET and DEL is
	// refused with "ERROR: gateway unavailable: ...", as a gateway that
	// runs no Raft refuses them.
	unavailable string
	// unavailableAfter, if positive, makes the server refuse that way
	// every SET, GET and DEL after it has answered that many, as a gateway
	// whose disk has just filled.
	unavailableAfter int

	mu       sync.Mutex
	served   int // SETs, GETs and DELs answered
	messages map[int64]string
	listener net.Listener
	conns    []net.Conn
	killed   bool
}

// start serves on 127.0.0.1 until the test ends and returns the address.
func (s *clientTestServer) start(t *testing.T) string {
	t.Helper()
	s.messages = make(map[int64]string)
	s.dead = make(chan struct{})
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s.listener = listener
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.killed {
				s.mu.Unlock()
				_ = conn.Close()
				continue
			}
			s.conns = append(s.conns, conn)
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				s.serve(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		s.kill()
		wg.Wait()
	})
	return listener.Addr().String()
}

// kill stops listening and closes every connection.
func (s *clientTestServer) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.killed {
		return
	}
	s.killed = true
	_ = s.listener.Close()
	for _, conn := range s.conns {
		_ = conn.Close()
	}
	close(s.dead)
}

// drop ends a connection the way closeAfter, closeIdle and dies say.
func (s *clientTestServer) drop(conn net.Conn) {
	if s.dies {
		s.kill()
		return
	}
	_ = conn.Close()
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
			s.drop(conn)
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
		if s.closeIdle && s.closeAfter > 0 && answered == s.closeAfter {
			writer.Flush()
			s.drop(conn)
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
	case codec.KindSet, codec.KindGet, codec.KindDel:
		if s.unavailableAfter > 0 && s.served >= s.unavailableAfter {
			return codec.ErrorPrefix + codec.UnavailablePrefix + "disk full: test"
		}
		if s.unavailable != "" {
			return codec.ErrorPrefix + codec.UnavailablePrefix + s.unavailable
		}
		s.served++
	}
	switch command.Kind {
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

// runClientWith runs the client with opts (reconnects back off 1 ms, and
// the connection is checked before every command) and input as standard
// input.
func runClientWith(t *testing.T, opts clientOptions, input io.Reader) (stdout, stderr string, err error) {
	t.Helper()
	opts.reconnectBackoff = time.Millisecond
	opts.probeIdleAfter = time.Nanosecond
	if opts.ioTimeout == 0 {
		opts.ioTimeout = 10 * time.Second
	}
	var out, errOut bytes.Buffer
	err = runClient(context.Background(), opts, input, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestClientLostConnectionNoGatewayLeft: the one gateway dies in the
// middle of a session. A command with no effect cannot be sent again
// anywhere, so the session ends with an error naming the address; a bulk
// run prints what it did first.
func TestClientLostConnectionNoGatewayLeft(t *testing.T) {
	cases := []struct {
		name   string
		script string
		output *regexp.Regexp
	}{
		{"single commands", "PING\nPING\nPING\nPING\n", regexp.MustCompile(`^PONG\nPONG\n$`)},
		{"bulk", "PING\n5000 SET x\nPING\n", regexp.MustCompile(
			`^PONG\nbulk SET ids 0\.\.\d+: \d+ ops in .*, \d+ outcome unknown \(GET them to see\), 0 reconnects \(127\.0\.0\.1:\d+ lost with ids 1\.\.\d+ in flight, no gateway answered\)\n$`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			server := &clientTestServer{prompting: true, closeAfter: 2, dies: true}
			addr := server.start(t)
			stdout, _, err := runClientWith(t, clientOptions{addr: addr}, strings.NewReader(tc.script))
			if err == nil || !strings.Contains(err.Error(), "connection to "+addr+" lost") ||
				!strings.Contains(err.Error(), "no server answered at "+addr+" (each tried 5 times)") {
				t.Fatalf("err = %v, want the lost connection and the address tried", err)
			}
			if !tc.output.MatchString(stdout) {
				t.Fatalf("stdout = %q, want %s", stdout, tc.output)
			}
		})
	}
}

// TestClientFailsOverSingleCommands: the first gateway of --addr dies
// after two replies, with a SET in flight. The client says that SET's
// outcome is unknown, does not send it again, and goes on at the second
// gateway (a separate store here, so what it holds shows what was sent
// there).
func TestClientFailsOverSingleCommands(t *testing.T) {
	first := &clientTestServer{prompting: true, closeAfter: 2, dies: true}
	second := &clientTestServer{prompting: false}
	firstAddr, secondAddr := first.start(t), second.start(t)
	csvPath := filepath.Join(t.TempDir(), "client.csv")
	script := "SET 1 a\nGET 1\nSET 2 b\nGET 2\nSET 3 c\nDEL 1\nPING\n"
	stdout, stderr, err := runClientWith(t, clientOptions{addr: firstAddr + "," + secondAddr, csvPath: csvPath, clientID: "f"}, strings.NewReader(script))
	if err != nil {
		t.Fatalf("tolerex client: %v\n%s%s", err, stdout, stderr)
	}
	want := "OK\na\n" +
		"ERROR: connection to " + firstAddr + ` lost; the outcome of "SET 2 b" is unknown (GET 2 to see; the client does not send it again: that would be a new request); reconnected to ` + secondAddr + "\n" +
		"NOT_FOUND\nOK\nNOT_FOUND\nPONG\n"
	if stdout != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", stdout, want)
	}
	if stderr != "" {
		t.Errorf("stderr %q, want nothing (the reconnect is on the ERROR line)", stderr)
	}
	if _, ok := second.stored(2); ok {
		t.Error("the SET whose connection was lost was sent again to the second gateway")
	}
	if got, ok := second.stored(3); !ok || got != "c" {
		t.Errorf("second gateway holds %q, %v under id 3, want c", got, ok)
	}
	var statuses []string
	for _, row := range readCSV(t, csvPath)[1:] {
		statuses = append(statuses, row[2]+" "+row[6])
	}
	if got, want := strings.Join(statuses, ","), "SET OK,GET OK,SET UNKNOWN,GET NOT_FOUND,SET OK,DEL NOT_FOUND,PING OK"; got != want {
		t.Errorf("CSV operations %s, want %s", got, want)
	}
}

// TestClientMovesOnFromAnUnavailableGateway: a gateway that runs no Raft
// refuses every request definitely, so the client sends it to the next
// gateway, a SET too, and stays there; with every gateway unavailable it
// tries each once and prints the last refusal.
func TestClientMovesOnFromAnUnavailableGateway(t *testing.T) {
	full := &clientTestServer{prompting: true, unavailable: "disk full: test"}
	good := &clientTestServer{prompting: true}
	fullAddr, goodAddr := full.start(t), good.start(t)
	stdout, stderr, err := runClientWith(t, clientOptions{addr: fullAddr + "," + goodAddr}, strings.NewReader("SET 1 a\nGET 1\n"))
	if err != nil {
		t.Fatalf("tolerex client: %v\n%s%s", err, stdout, stderr)
	}
	if stdout != "OK\na\n" {
		t.Errorf("stdout %q, want the second gateway's answers", stdout)
	}
	if want := "gateway " + fullAddr + ` cannot serve (gateway unavailable: disk full: test); sending "SET 1 a" to ` + goodAddr +
		" instead (the refusal was definite: it had no effect)\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
	if got, ok := good.stored(1); !ok || got != "a" {
		t.Errorf("the second gateway holds %q, %v under id 1, want a", got, ok)
	}

	var addrs []string
	for range 3 {
		addrs = append(addrs, (&clientTestServer{unavailable: "disk full: test"}).start(t))
	}
	stdout, stderr, err = runClientWith(t, clientOptions{addr: strings.Join(addrs, ",")}, strings.NewReader("DEL 1\n"))
	if err != nil {
		t.Fatalf("tolerex client: %v\n%s%s", err, stdout, stderr)
	}
	if want := "ERROR: gateway unavailable: disk full: test\n"; stdout != want || strings.Count(stderr, "cannot serve") != 2 {
		t.Errorf("every gateway unavailable: stdout %q, stderr %q; want the last refusal after moving on twice", stdout, stderr)
	}
}

// TestClientResendsWhatHasNoEffect: a GET whose connection was lost is
// sent once more on the next gateway, and the client says so on stderr.
func TestClientResendsWhatHasNoEffect(t *testing.T) {
	first := &clientTestServer{prompting: false, closeAfter: 1, dies: true}
	second := &clientTestServer{prompting: true}
	firstAddr, secondAddr := first.start(t), second.start(t)
	stdout, stderr, err := runClientWith(t, clientOptions{addr: firstAddr + "," + secondAddr}, strings.NewReader("PING\nGET 5\nHELP\n"))
	if err != nil {
		t.Fatalf("tolerex client: %v\n%s%s", err, stdout, stderr)
	}
	if want := "PONG\nNOT_FOUND\n" + codec.Help + "\n"; stdout != want {
		t.Errorf("stdout %q, want %q", stdout, want)
	}
	if want := "connection to " + firstAddr + ` lost before "GET 5" was answered; reconnected to ` + secondAddr + " and sent it again (it has no effect)\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
}

// TestClientReconnectsWhenIdleLossIsFound: the gateway closed the
// connection while the client waited for input; the next command goes to
// the next gateway, with no doubt about any request.
func TestClientReconnectsWhenIdleLossIsFound(t *testing.T) {
	for _, bulk := range []bool{false, true} {
		t.Run(fmt.Sprintf("bulk=%v", bulk), func(t *testing.T) {
			first := &clientTestServer{prompting: true, closeAfter: 1, closeIdle: true, dies: true}
			second := &clientTestServer{prompting: true}
			firstAddr, secondAddr := first.start(t), second.start(t)
			input, feed := io.Pipe()
			go func() {
				_, _ = io.WriteString(feed, "SET 1 a\n")
				<-first.dead
				next := "SET 2 b\n"
				if bulk {
					next = "3 SET m\n"
				}
				_, _ = io.WriteString(feed, next)
				_ = feed.Close()
			}()
			stdout, stderr, err := runClientWith(t, clientOptions{addr: firstAddr + "," + secondAddr}, input)
			if err != nil {
				t.Fatalf("tolerex client: %v\n%s%s", err, stdout, stderr)
			}
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			if len(lines) != 2 || lines[0] != "OK" {
				t.Fatalf("stdout %q", stdout)
			}
			if bulk {
				if match := bulkSummaryPattern.FindStringSubmatch(lines[1]); match == nil || match[1] != "3" || match[2] != "" {
					t.Errorf("bulk summary %q, want a clean run of 3", lines[1])
				}
			} else if lines[1] != "OK" {
				t.Errorf("SET after an idle loss = %q, want OK", lines[1])
			}
			if want := "connection to " + firstAddr + " was lost while idle (nothing in flight); reconnected to " + secondAddr + "\n"; stderr != want {
				t.Errorf("stderr %q, want %q", stderr, want)
			}
			id := int64(2)
			if bulk {
				id = 4
			}
			if _, ok := second.stored(id); !ok {
				t.Errorf("second gateway lacks id %d", id)
			}
		})
	}
}

var movedSummaryPattern = regexp.MustCompile(
	`^bulk SET ids 0\.\.2999: 3000 ops in \d+\.\d{3} s, \d+ ops/s, avg RTT \d+\.\d{2} ms, p99 RTT \d+\.\d{2} ms, left 1 unavailable gateway \((\S+) refused ids 100\.\.(\d+), sent again to (\S+)\)$`)

var stoppedSummaryPattern = regexp.MustCompile(
	`^bulk SET ids 0\.\.\d+: (\d+) ops in \d+\.\d{3} s, \d+ ops/s, avg RTT \d+\.\d{2} ms, p99 RTT \d+\.\d{2} ms, (\d+) errors \(first: ERROR: gateway unavailable: disk full: b\), ` +
		`left 2 unavailable gateways \((\S+) refused (?:ids 0\.\.\d+|id 0), sent again to (\S+); (\S+) refused (?:ids 0\.\.\d+|id 0), no other gateway took them\); ` +
		`stopped: every gateway of --addr refused in turn \(last: ERROR: gateway unavailable: disk full: b\)$`)

// runOnTwoGateways starts first and second and runs tolerex client on
// input with --addr first,second and a CSV log. It returns both
// addresses, stdout and the CSV's path; an exit with an error fails t.
func runOnTwoGateways(t *testing.T, first, second *clientTestServer, input string) (firstAddr, secondAddr, stdout, csvPath string) {
	t.Helper()
	firstAddr, secondAddr = first.start(t), second.start(t)
	csvPath = filepath.Join(t.TempDir(), "bulk.csv")
	stdout, stderr, err := runClientWith(t, clientOptions{addr: firstAddr + "," + secondAddr, csvPath: csvPath, clientID: "b"},
		strings.NewReader(input))
	if err != nil {
		t.Fatalf("tolerex client: %v\n%s%s", err, stdout, stderr)
	}
	return firstAddr, secondAddr, stdout, csvPath
}

var failoverSummaryPattern = regexp.MustCompile(
	`^bulk SET ids 0\.\.2999: 3000 ops in \d+\.\d{3} s, \d+ ops/s, avg RTT \d+\.\d{2} ms, p99 RTT \d+\.\d{2} ms, (\d+) outcome unknown \(GET them to see\), 1 reconnect \((\S+) lost with ids 100\.\.(\d+) in flight, reconnected to (\S+)\)$`)

// TestClientBulkFailsOver: the first gateway dies after 100 replies of a
// bulk run of 3000 with up to 1024 in flight. The run counts those in
// flight as unknown, reconnects and sends the rest to the second gateway,
// and its summary says so.
func TestClientBulkFailsOver(t *testing.T) {
	first := &clientTestServer{prompting: true, closeAfter: 100, dies: true}
	second := &clientTestServer{prompting: false}
	firstAddr, secondAddr, stdout, csvPath := runOnTwoGateways(t, first, second, "3000 SET m\n1 SET after\n")
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("stdout %q", stdout)
	}
	match := failoverSummaryPattern.FindStringSubmatch(lines[0])
	if match == nil || match[2] != firstAddr || match[4] != secondAddr {
		t.Fatalf("summary %q, want one loss of %s and a reconnect to %s", lines[0], firstAddr, secondAddr)
	}
	unknown, _ := strconv.Atoi(match[1])
	lastInFlight, _ := strconv.ParseInt(match[3], 10, 64)
	if unknown < 1 || unknown > bulkWindow || int64(unknown) != lastInFlight-99 {
		t.Errorf("%d unknown, ids 100..%d in flight: want 1 to %d, matching", unknown, lastInFlight, bulkWindow)
	}
	// The first gateway stored ids 0..99; the second every id after the
	// ones in flight; the ones in flight were sent to neither again.
	for id := range int64(3000) {
		_, onFirst := first.stored(id)
		_, onSecond := second.stored(id)
		switch {
		case id < 100 && (!onFirst || onSecond):
			t.Fatalf("id %d: first %v, second %v; want only the first", id, onFirst, onSecond)
		case id >= 100 && id <= lastInFlight && onSecond:
			t.Fatalf("id %d was in flight when the connection was lost, and was sent again", id)
		case id > lastInFlight && !onSecond:
			t.Fatalf("id %d not sent after the reconnect", id)
		}
	}
	if match := bulkSummaryPattern.FindStringSubmatch(lines[1]); match == nil || !strings.HasPrefix(lines[1], "bulk SET ids 3000..3000: ") {
		t.Errorf("next bulk run %q, want a clean run of id 3000", lines[1])
	}
	rows := readCSV(t, csvPath)
	if len(rows) != 3 || rows[1][3] != "3000" || rows[1][6] != statusError || rows[2][6] != statusOK {
		t.Errorf("CSV rows %q, want the failed-over run as ERROR", rows)
	}
}

// TestClientBulkMovesOnFromAnUnavailableGateway: a gateway that starts
// refusing as unavailable in the middle of a bulk run is left for the
// next; the ids it refused are sent there, every id is stored once, and
// the summary says so.
func TestClientBulkMovesOnFromAnUnavailableGateway(t *testing.T) {
	first := &clientTestServer{prompting: true, unavailableAfter: 100}
	second := &clientTestServer{}
	firstAddr, secondAddr, stdout, csvPath := runOnTwoGateways(t, first, second, "3000 SET m\n")
	match := movedSummaryPattern.FindStringSubmatch(strings.TrimSuffix(stdout, "\n"))
	if match == nil || match[1] != firstAddr || match[3] != secondAddr {
		t.Fatalf("summary %q, want no error and one move from %s to %s", stdout, firstAddr, secondAddr)
	}
	lastRefused, _ := strconv.ParseInt(match[2], 10, 64)
	if lastRefused < 100 || lastRefused >= 100+bulkWindow {
		t.Errorf("ids 100..%d refused, want at most the %d in flight", lastRefused, bulkWindow)
	}
	for id := range int64(3000) {
		_, onFirst := first.stored(id)
		message, onSecond := second.stored(id)
		switch {
		case id < 100 && (!onFirst || onSecond):
			t.Fatalf("id %d: first %v, second %v; want only the first", id, onFirst, onSecond)
		case id >= 100 && (onFirst || message != "m_"+strconv.FormatInt(id, 10)):
			t.Fatalf("id %d: first %v, second %q; want only the second, with m_%d", id, onFirst, message, id)
		}
	}
	if rows := readCSV(t, csvPath); len(rows) != 2 || rows[1][3] != "3000" || rows[1][6] != statusOK {
		t.Errorf("CSV rows %q, want the run as OK: nothing was lost or refused for good", rows)
	}
}

// TestClientBulkStopsWhenEveryGatewayRefuses: with every gateway
// unavailable a bulk run tries each once, stops with the refusals counted
// as errors, and the session goes on; with one address refusals are error
// replies and the run covers every id.
func TestClientBulkStopsWhenEveryGatewayRefuses(t *testing.T) {
	a := &clientTestServer{unavailable: "disk full: a"}
	b := &clientTestServer{unavailable: "disk full: b"}
	aAddr, bAddr := a.start(t), b.start(t)
	stdout, stderr, err := runClientWith(t, clientOptions{addr: aAddr + "," + bAddr}, strings.NewReader("500 SET m\nPING\n"))
	if err != nil {
		t.Fatalf("tolerex client: %v\n%s%s", err, stdout, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 2 || lines[1] != codec.ReplyPong {
		t.Fatalf("stdout %q, want a summary and PONG", stdout)
	}
	match := stoppedSummaryPattern.FindStringSubmatch(lines[0])
	if match == nil || match[1] != match[2] || match[3] != aAddr || match[4] != bAddr || match[5] != bAddr {
		t.Fatalf("summary %q, want a's refusals sent to b, refused again, each counted as an error, and the run stopped", lines[0])
	}

	stdout, stderr, err = runClientWith(t, clientOptions{addr: aAddr}, strings.NewReader("500 SET m\n"))
	if err != nil {
		t.Fatalf("tolerex client: %v\n%s%s", err, stdout, stderr)
	}
	if match := bulkSummaryPattern.FindStringSubmatch(strings.TrimSuffix(stdout, "\n")); match == nil || match[1] != "500" || match[3] != "500" ||
		match[4] != "ERROR: gateway unavailable: disk full: a" {
		t.Errorf("one address: summary %q, want all 500 sent and refused", stdout)
	}
}

func TestDescribeIDs(t *testing.T) {
	for _, c := range []struct {
		ids  []int64
		want string
	}{
		{nil, "nothing"},
		{[]int64{7}, "id 7"},
		{[]int64{2, 3}, "ids 2..3"},
		{[]int64{2, 3, 4, 9, 11, 12}, "ids 2..4, 9, 11..12"},
		{[]int64{1, 3, 5, 7, 9, 10}, "ids 1, 3, 5, 7 and 2 more"},
	} {
		if got := describeIDs(c.ids); got != c.want {
			t.Errorf("describeIDs(%v) = %q, want %q", c.ids, got, c.want)
		}
	}
}

func TestBulkSummaryLosses(t *testing.T) {
	result := bulkResult{FirstID: 0, Count: 10, Elapsed: time.Second, Unknown: 3, Losses: []bulkLoss{
		{Addr: "a:1", InFlight: []int64{2, 3}, To: "b:2"},
		{Addr: "b:2", To: "a:1"},
		{Addr: "a:1", InFlight: []int64{7}},
	}}
	want := "bulk SET ids 0..9: 10 ops in 1.000 s, 10 ops/s, avg RTT 0.00 ms, p99 RTT 0.00 ms, 3 outcome unknown (GET them to see), " +
		"2 reconnects (a:1 lost with ids 2..3 in flight, reconnected to b:2; b:2 lost with nothing in flight, reconnected to a:1; a:1 lost with id 7 in flight, no gateway answered)"
	if got := result.summary(); got != want {
		t.Errorf("summary:\n%s\nwant:\n%s", got, want)
	}
	for range 10 {
		result.Losses = append(result.Losses, bulkLoss{Addr: "x:1", To: "y:1"})
	}
	if got := result.summary(); !strings.HasSuffix(got, "; and 8 more)") {
		t.Errorf("summary of 13 losses %q, want the first %d and a count", got, maxLossesListed)
	}
}

func TestClientAddrList(t *testing.T) {
	server := &clientTestServer{prompting: true}
	addr := server.start(t)
	dead := deadAddr(t)
	stdout, stderr, err := runClientCommand(t, "SET 1 x\n", "--addr", dead+", "+addr)
	if err != nil || stdout != "OK\n" {
		t.Fatalf("--addr dead,alive: %v, stdout %q, stderr %q", err, stdout, stderr)
	}
	for _, bad := range []string{"", "a:1,,b:2", "nohost", addr + "," + addr} {
		if _, _, err := runClientCommand(t, "PING\n", "--addr", bad); err == nil || !strings.Contains(err.Error(), "--addr") {
			t.Errorf("--addr %q: err %v, want an --addr error", bad, err)
		}
	}
	other := deadAddr(t)
	_, _, err = runClientCommand(t, "PING\n", "--addr", dead+","+other)
	if err == nil || !strings.Contains(err.Error(), "no server answered at "+dead+", "+other+" (each tried once)") {
		t.Errorf("--addr with nothing listening: err %v, want both addresses named", err)
	}
}

// deadAddr is an address on 127.0.0.1 where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	listener.Close()
	return addr
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
