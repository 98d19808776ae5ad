package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tolerex/tolerex/cluster/certs"
	"github.com/tolerex/tolerex/gateway/client"
	"github.com/tolerex/tolerex/gateway/codec"
)

const (
	defaultClientAddr = "127.0.0.1:6666"
	clientDialTimeout = 10 * time.Second
	// maxBulkCount is the largest N of "N SET <message>".
	maxBulkCount = 10_000_000
	// bulkWindow is how many bulk requests may await their reply.
	bulkWindow = 1024
	// bulkFlushEvery is how many bulk requests are buffered before they are
	// written out even though the window still has room.
	bulkFlushEvery = 64
	// maxInputLine bounds one line read from standard input.
	maxInputLine = client.MaxReplyLength + 64
	// csvIDPlaceholder in the --csv file name is replaced by the client id.
	csvIDPlaceholder = "<id>"
	// defaultCSVFile is the --csv file when the flag has no value.
	defaultCSVFile = "tolerex-client-" + csvIDPlaceholder + ".csv"
	// rttHistogramMax is the largest RTT, in microseconds, the bulk
	// histogram tells apart; slower replies count as this value.
	rttHistogramMax = int64(time.Hour / time.Microsecond)
)

// CSV operation names and statuses.
const (
	opSet     = "SET"
	opGet     = "GET"
	opDel     = "DEL"
	opPing    = "PING"
	opBulkSet = "BULK_SET"

	statusOK       = "OK"
	statusNotFound = "NOT_FOUND"
	statusError    = "ERROR"
)

// clientOptions are the flags of "tolerex client".
type clientOptions struct {
	addr     string
	measure  bool
	csvPath  string
	clientID string
	offset   int64
	tlsCA    string
}

// newClientCommand builds "tolerex client": an interactive HaToKuSe client
// with a pipelined bulk SET, RTT measurement and CSV recording.
func newClientCommand() *cobra.Command {
	var opts clientOptions
	cmd := &cobra.Command{
		Use:   "client [--addr HOST:PORT] [--measure] [--csv[=FILE]] [--id NAME] [--offset N]",
		Short: "Interactive HaToKuSe client with a pipelined bulk SET",
		Long: `Connect to a Tolerex gateway and send the commands read from standard input,
one per line, printing each reply: SET <id> <message>, GET <id>, DEL <id>,
PING, HELP and QUIT. On a terminal the client shows a "tolerex> " prompt.

"N SET <message>" (1 <= N <= 10000000) stores <message>_<id> under N
consecutive ids, pipelined with up to 1024 requests in flight, and prints one
summary line: the ids it wrote, count, total time, ops/s, average and p99
round-trip time and the number of error replies. A bulk run starts at the
larger of --offset (default 0) and one past the highest id this session has
sent a SET for (by hand or in an earlier bulk run), so it never overwrites
what this session stored. It does overwrite whatever those ids hold from
earlier sessions or other clients (it does not read before it writes): give
a fresh range with --offset.

--csv appends one row per operation (one per bulk run) to FILE, default
tolerex-client-<id>.csv; "<id>" in FILE is replaced by the client id. Give
the file as --csv=FILE.`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.clientID == "" {
				opts.clientID = defaultClientID()
			}
			opts.csvPath = strings.ReplaceAll(opts.csvPath, csvIDPlaceholder, opts.clientID)
			return runClient(cmd.Context(), opts, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&opts.addr, "addr", defaultClientAddr, "gateway HaToKuSe address (host:port)")
	flags.BoolVar(&opts.measure, "measure", false, "print the round-trip time of every single command")
	flags.StringVar(&opts.csvPath, "csv", "", "append one CSV row per operation to this file")
	flags.Lookup("csv").NoOptDefVal = defaultCSVFile
	flags.StringVar(&opts.clientID, "id", "", "client id written in CSV rows (default hostname-pid)")
	flags.Int64Var(&opts.offset, "offset", 0, "lowest id bulk runs use (they start past any id this session SETs)")
	flags.StringVar(&opts.tlsCA, "tls-ca", "", "connect with TLS, trusting the CA certificate in this file (for a gateway started with --client-tls-dir)")
	return cmd
}

// defaultClientID is hostname-pid.
func defaultClientID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "client"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// runClient connects to opts.addr and runs the commands read from in until
// QUIT or the end of the input. Cancelling ctx closes the connection.
func runClient(ctx context.Context, opts clientOptions, in io.Reader, out, errOut io.Writer) (err error) {
	dialOpts := client.Options{DialTimeout: clientDialTimeout}
	if opts.tlsCA != "" {
		pool, err := certs.LoadCAPool(opts.tlsCA)
		if err != nil {
			return err
		}
		dialOpts.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	}
	conn, err := client.Dial(ctx, opts.addr, dialOpts)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Closing the connection unblocks whatever waits on it.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	session := &clientSession{
		conn:        conn,
		addr:        opts.addr,
		out:         out,
		errOut:      errOut,
		measure:     opts.measure,
		nextBulk:    opts.offset,
		interactive: isTerminal(in),
	}
	if opts.csvPath != "" {
		recorder, err := openCSVRecorder(opts.csvPath, opts.clientID)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, recorder.Close()) }()
		session.recorder = recorder
	}
	return session.run(ctx, in)
}

// isTerminal reports whether in is an interactive terminal.
func isTerminal(in io.Reader) bool {
	file, ok := in.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// clientSession is one connected "tolerex client" run.
type clientSession struct {
	conn        *client.Client
	addr        string
	out         io.Writer
	errOut      io.Writer
	measure     bool
	recorder    *csvRecorder // nil without --csv
	nextBulk    int64        // first id of the next bulk run
	noBulkIDs   bool         // this session SET the largest id: no id is left above it
	interactive bool         // show a prompt
}

// wrote records that the session sent a SET for id, so that bulk runs
// start past it.
func (s *clientSession) wrote(id int64) {
	switch {
	case id < s.nextBulk:
	case id == math.MaxInt64:
		s.noBulkIDs = true
	default:
		s.nextBulk = id + 1
	}
}

// inputLine is one line of standard input, or the error that ended it.
type inputLine struct {
	line []byte
	err  error
}

func (s *clientSession) run(ctx context.Context, in io.Reader) error {
	done := make(chan struct{})
	defer close(done)
	lines := readInputLines(in, done)
	if s.interactive {
		fmt.Fprintf(s.out, "Connected to %s. Type HELP for commands; \"N SET <message>\" runs a pipelined bulk SET of N new ids (see tolerex client --help).\n", s.addr)
	}
	for {
		if s.interactive {
			io.WriteString(s.out, codec.Prompt)
		}
		var input inputLine
		select {
		case <-ctx.Done():
			return fmt.Errorf("client interrupted: %w", context.Cause(ctx))
		case input = <-lines:
		}
		if input.err != nil {
			if errors.Is(input.err, io.EOF) {
				if s.interactive {
					fmt.Fprintln(s.out)
				}
				return nil
			}
			return fmt.Errorf("read standard input: %w", input.err)
		}
		quit, err := s.handle(input.line)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("client interrupted: %w", context.Cause(ctx))
			}
			return err
		}
		if quit {
			return nil
		}
	}
}

// readInputLines reads in line by line on its own goroutine, so that an
// interrupt is seen while waiting for input. The last item carries the
// error, io.EOF at the end of the input.
func readInputLines(in io.Reader, done <-chan struct{}) <-chan inputLine {
	lines := make(chan inputLine)
	go func() {
		scanner := bufio.NewScanner(in)
		scanner.Buffer(make([]byte, 0, 64<<10), maxInputLine)
		for {
			item := inputLine{err: io.EOF}
			if scanner.Scan() {
				item = inputLine{line: bytes.Clone(scanner.Bytes())}
			} else if err := scanner.Err(); err != nil {
				item = inputLine{err: err}
			}
			select {
			case lines <- item:
			case <-done:
				return
			}
			if item.err != nil {
				return
			}
		}
	}()
	return lines
}

// handle runs one input line. Invalid local input is reported and is not
// an error; the error return means the session cannot go on.
func (s *clientSession) handle(line []byte) (quit bool, err error) {
	bulk, isBulk, err := parseBulk(line)
	if isBulk {
		if err != nil {
			fmt.Fprintf(s.errOut, "error: %v\n", err)
			return false, nil
		}
		return false, s.runBulk(bulk)
	}
	command := codec.Parse(line)
	switch command.Kind {
	case codec.KindEmpty:
		return false, nil
	case codec.KindQuit:
		s.quit(line)
		return true, nil
	}
	return false, s.single(line, command)
}

// quit sends the QUIT line and prints the farewell. The session ends
// however the server answers.
func (s *clientSession) quit(line []byte) {
	reply, err := s.conn.Do(string(line))
	if err != nil || reply == "" {
		reply = codec.ReplyBye
	}
	fmt.Fprintln(s.out, reply)
}

// single sends one command, prints the reply and records it.
func (s *clientSession) single(line []byte, command codec.Command) error {
	if command.Kind == codec.KindSet {
		s.wrote(command.ID)
	}
	start := time.Now()
	reply, err := s.conn.Do(string(line))
	rtt := time.Since(start)
	var serverErr *client.ServerError
	if err != nil && !errors.As(err, &serverErr) {
		return fmt.Errorf("connection to %s lost: %w", s.addr, err)
	}
	fmt.Fprintln(s.out, reply)
	if s.measure {
		fmt.Fprintf(s.out, "(%s)\n", formatMillis(rtt))
	}
	operation := operationName(line)
	if s.recorder == nil || operation == "" {
		return nil
	}
	payload := 0
	if command.Kind == codec.KindSet {
		payload = len(command.Message)
	}
	return s.recorder.Record(csvRow{
		At:        start,
		Operation: operation,
		Count:     1,
		Bytes:     int64(payload),
		RTT:       rtt,
		Status:    replyStatus(reply),
	})
}

// runBulk runs one "N SET <message>" and prints its summary.
func (s *clientSession) runBulk(bulk bulkRequest) error {
	if s.noBulkIDs || s.nextBulk > math.MaxInt64-int64(bulk.Count-1) {
		fmt.Fprintf(s.errOut, "error: no %d ids left past the highest id this session wrote; start a session with a lower --offset\n", bulk.Count)
		return nil
	}
	start := time.Now()
	result, err := runBulkSet(s.conn, bulk, s.nextBulk)
	if err != nil {
		return fmt.Errorf("bulk SET: connection to %s lost: %w", s.addr, err)
	}
	s.wrote(s.nextBulk + int64(bulk.Count) - 1)
	fmt.Fprintln(s.out, result.summary())
	if s.recorder == nil {
		return nil
	}
	status := statusOK
	if result.Errors > 0 {
		status = statusError
	}
	return s.recorder.Record(csvRow{
		At:        start,
		Operation: opBulkSet,
		Count:     result.Count,
		Bytes:     result.Bytes,
		RTT:       result.Elapsed,
		Status:    status,
	})
}

// operationName is the CSV operation of a single command line, or "" for
// commands that are not recorded (HELP, unknown verbs).
func operationName(line []byte) string {
	verb, _ := splitField(line)
	for _, name := range []string{opSet, opGet, opDel, opPing} {
		if bytes.EqualFold(verb, []byte(name)) {
			return name
		}
	}
	return ""
}

// replyStatus is the CSV status of a reply.
func replyStatus(reply string) string {
	switch {
	case reply == codec.ReplyNotFound:
		return statusNotFound
	case strings.HasPrefix(reply, codec.ErrorPrefix):
		return statusError
	}
	return statusOK
}

func formatMillis(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// bulkRequest is a parsed "N SET <message>".
type bulkRequest struct {
	Count   int
	Message []byte
}

// parseBulk recognises the bulk form "N SET <message>". isBulk is false for
// any other line. A line whose first field looks like a count, or whose
// second field is SET while its first is not a command, is meant as a bulk
// command: isBulk is true and err says what is wrong with it, if anything.
// The message is every byte after SET and the blanks that follow it, as the
// server reads a SET message; it aliases line.
func parseBulk(line []byte) (request bulkRequest, isBulk bool, err error) {
	countField, rest := splitField(line)
	verb, rest := splitField(rest)
	if len(countField) == 0 || isCommandVerb(countField) {
		return bulkRequest{}, false, nil
	}
	isSet := bytes.EqualFold(verb, []byte("SET"))
	first := countField[0]
	if !isSet && !(first >= '0' && first <= '9') && first != '+' && first != '-' {
		return bulkRequest{}, false, nil
	}
	if !isSet {
		return bulkRequest{}, true, fmt.Errorf("bulk form is N SET <message>, got %q", line)
	}
	count, convErr := strconv.ParseInt(string(countField), 10, 64)
	if convErr != nil {
		return bulkRequest{}, true, fmt.Errorf("bulk count %q is not a whole number (bulk form: N SET <message>)", countField)
	}
	if count < 1 || count > maxBulkCount {
		return bulkRequest{}, true, fmt.Errorf("bulk count %d out of range: use 1 to %d", count, maxBulkCount)
	}
	message := skipBlanks(rest)
	if len(message) == 0 {
		return bulkRequest{}, true, errors.New("bulk form needs a message: N SET <message>")
	}
	return bulkRequest{Count: int(count), Message: message}, true, nil
}

// isCommandVerb reports whether field is a HaToKuSe command verb.
func isCommandVerb(field []byte) bool {
	for _, verb := range []string{"SET", "GET", "DEL", "PING", "HELP", "QUIT", "EXIT"} {
		if bytes.EqualFold(field, []byte(verb)) {
			return true
		}
	}
	return false
}

// splitField skips leading blanks and splits line at the next blank into a
// field and the rest, which starts at that blank.
func splitField(line []byte) (field, rest []byte) {
	line = skipBlanks(line)
	end := bytes.IndexAny(line, " \t")
	if end < 0 {
		return line, nil
	}
	return line[:end], line[end:]
}

func skipBlanks(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// bulkResult is the outcome of one bulk run.
type bulkResult struct {
	FirstID    int64
	Count      int
	Elapsed    time.Duration
	Bytes      int64 // message bytes sent
	Errors     int   // replies other than OK
	FirstError string
	MeanRTT    time.Duration
	P99RTT     time.Duration
}

// summary is the one line printed after a bulk run.
func (r bulkResult) summary() string {
	var line strings.Builder
	opsPerSecond := 0.0
	if r.Elapsed > 0 {
		opsPerSecond = float64(r.Count) / r.Elapsed.Seconds()
	}
	fmt.Fprintf(&line, "bulk SET ids %d..%d: %d ops in %.3f s, %.0f ops/s, avg RTT %s, p99 RTT %s",
		r.FirstID, r.FirstID+int64(r.Count)-1, r.Count, r.Elapsed.Seconds(), opsPerSecond, formatMillis(r.MeanRTT), formatMillis(r.P99RTT))
	if r.Errors > 0 {
		fmt.Fprintf(&line, ", %d errors (first: %s)", r.Errors, r.FirstError)
	}
	return line.String()
}

// bulkTally collects the replies of a bulk run; only the reader goroutine
// touches it until that goroutine ends.
type bulkTally struct {
	rtts       *hdrhistogram.Histogram // microseconds
	totalRTT   time.Duration
	errors     int
	firstError string
}

// runBulkSet sends "SET <id> <message>_<id>" for the ids firstID ..
// firstID+Count-1 with at most bulkWindow requests in flight, reading the
// replies on a second goroutine. The error return means the connection
// failed; error replies are counted in the result.
func runBulkSet(conn *client.Client, bulk bulkRequest, firstID int64) (bulkResult, error) {
	slots := make(chan struct{}, bulkWindow)
	sentAt := make(chan time.Time, bulkWindow)
	readerDone := make(chan struct{})
	tally := bulkTally{rtts: hdrhistogram.New(1, rttHistogramMax, 3)}
	var readErr error

	start := time.Now()
	go func() {
		defer close(readerDone)
		readErr = readBulkReplies(conn, bulk.Count, slots, sentAt, &tally)
	}()
	payload, writeErr := writeBulkRequests(conn, bulk, firstID, slots, sentAt, readerDone)
	if writeErr != nil {
		// The reader may wait for replies that will never come.
		_ = conn.Close()
	}
	<-readerDone
	elapsed := time.Since(start)
	if writeErr != nil {
		return bulkResult{}, writeErr
	}
	if readErr != nil {
		return bulkResult{}, readErr
	}
	return bulkResult{
		FirstID:    firstID,
		Count:      bulk.Count,
		Elapsed:    elapsed,
		Bytes:      payload,
		Errors:     tally.errors,
		FirstError: tally.firstError,
		MeanRTT:    tally.totalRTT / time.Duration(bulk.Count),
		P99RTT:     time.Duration(tally.rtts.ValueAtQuantile(99)) * time.Microsecond,
	}, nil
}

// writeBulkRequests takes a window slot and stamps the send time for every
// request before buffering it, and flushes every bulkFlushEvery requests
// and whenever the window is full. It returns the message bytes sent. It
// stops early, without error, if the reader has ended.
func writeBulkRequests(conn *client.Client, bulk bulkRequest, firstID int64,
	slots chan<- struct{}, sentAt chan<- time.Time, readerDone <-chan struct{}) (int64, error) {
	var line []byte
	var payload int64
	unflushed := 0
	for i := range bulk.Count {
		select {
		case slots <- struct{}{}:
		default:
			if err := conn.Flush(); err != nil {
				return payload, err
			}
			unflushed = 0
			select {
			case slots <- struct{}{}:
			case <-readerDone:
				return payload, nil
			}
		}
		id := firstID + int64(i)
		line = append(line[:0], "SET "...)
		line = strconv.AppendInt(line, id, 10)
		line = append(line, ' ')
		messageStart := len(line)
		line = append(line, bulk.Message...)
		line = append(line, '_')
		line = strconv.AppendInt(line, id, 10)
		payload += int64(len(line) - messageStart)
		sentAt <- time.Now()
		if err := conn.Send(line); err != nil {
			return payload, err
		}
		if unflushed++; unflushed == bulkFlushEvery {
			if err := conn.Flush(); err != nil {
				return payload, err
			}
			unflushed = 0
		}
	}
	return payload, conn.Flush()
}

// readBulkReplies reads count replies, timing each against its send stamp
// and freeing its window slot.
func readBulkReplies(conn *client.Client, count int, slots <-chan struct{}, sentAt <-chan time.Time, tally *bulkTally) error {
	for range count {
		reply, err := conn.ReadReply()
		if err != nil {
			return err
		}
		rtt := time.Since(<-sentAt)
		<-slots
		tally.totalRTT += rtt
		micros := max(rtt.Microseconds(), 1)
		if tally.rtts.RecordValue(min(micros, rttHistogramMax)) != nil {
			return fmt.Errorf("record RTT %v: out of the histogram's range", rtt)
		}
		if string(reply) != codec.ReplyOK {
			if tally.errors == 0 {
				tally.firstError = string(reply)
			}
			tally.errors++
		}
	}
	return nil
}

// csvRow is one operation in the --csv file.
type csvRow struct {
	At        time.Time // when the operation started
	Operation string    // SET, GET, DEL, PING or BULK_SET
	Count     int       // operations: 1, or N for BULK_SET
	Bytes     int64     // request payload (message) bytes
	RTT       time.Duration
	Status    string // OK, NOT_FOUND or ERROR
}

// csvHeader is the first row of a new --csv file.
func csvHeader() []string {
	return []string{"Timestamp", "ClientID", "Operation", "Count", "Bytes", "RTT_us", "Status"}
}

// csvRecorder appends operation rows to a CSV file, one write per row so
// that several clients can share a file.
type csvRecorder struct {
	file     *os.File
	writer   *csv.Writer
	clientID string
}

// openCSVRecorder opens path for appending, creating it with a header row
// if it is new or empty.
func openCSVRecorder(path, clientID string) (*csvRecorder, error) {
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open CSV file: %w", err)
	}
	info, err := file.Stat()
	if err != nil {
		_ = file.Close()
		return nil, fmt.Errorf("stat CSV file %s: %w", path, err)
	}
	recorder := &csvRecorder{file: file, writer: csv.NewWriter(file), clientID: clientID}
	if info.Size() == 0 {
		if err := recorder.write(csvHeader()); err != nil {
			_ = file.Close()
			return nil, err
		}
	}
	return recorder, nil
}

// Record appends one row.
func (r *csvRecorder) Record(row csvRow) error {
	return r.write([]string{
		row.At.UTC().Format(time.RFC3339Nano),
		r.clientID,
		row.Operation,
		strconv.Itoa(row.Count),
		strconv.FormatInt(row.Bytes, 10),
		strconv.FormatInt(row.RTT.Microseconds(), 10),
		row.Status,
	})
}

func (r *csvRecorder) write(record []string) error {
	if err := r.writer.Write(record); err != nil {
		return fmt.Errorf("write CSV file %s: %w", r.file.Name(), err)
	}
	r.writer.Flush()
	if err := r.writer.Error(); err != nil {
		return fmt.Errorf("write CSV file %s: %w", r.file.Name(), err)
	}
	return nil
}

// Close closes the file.
func (r *csvRecorder) Close() error {
	if err := r.file.Close(); err != nil {
		return fmt.Errorf("close CSV file %s: %w", r.file.Name(), err)
	}
	return nil
}
