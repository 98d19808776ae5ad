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

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tolerex/tolerex/cluster/certs"
	"github.com/tolerex/tolerex/gateway/client"
	"github.com/tolerex/tolerex/gateway/codec"
)

const (
	defaultClientAddr = "127.0.0.1:6666"
	clientDialTimeout = 10 * time.Second
	// defaultIOTimeout is the default of --io-timeout: how long the client
	// and bench wait for a reply before taking the gateway for dead.
	defaultIOTimeout = time.Minute
	// maxFruitlessReconnects bounds a bulk run's reconnects in a row that
	// were each lost again before a single reply came back.
	maxFruitlessReconnects = 3
	// maxLossesListed is how many lost connections a bulk summary lists.
	maxLossesListed = 5
	// defaultProbeIdleAfter is how long the session must have been idle
	// before a command for the client to check that the connection is
	// still open (client.Probe waits up to a millisecond on an open one,
	// which a script of many commands would feel).
	defaultProbeIdleAfter = 10 * time.Millisecond
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
	// statusUnknown is a SET or DEL whose connection was lost before its
	// reply: it may or may not have taken effect.
	statusUnknown = "UNKNOWN"
)

// clientOptions are the flags of "tolerex client".
type clientOptions struct {
	addr      string // one address or a comma-separated list
	ioTimeout time.Duration
	measure   bool
	csvPath   string
	clientID  string
	offset    int64
	tlsCA     string
	// reconnectBackoff, when positive, replaces client.DefaultBackoff, and
	// probeIdleAfter defaultProbeIdleAfter (for tests: they have no flag).
	reconnectBackoff time.Duration
	probeIdleAfter   time.Duration
}

// newClientCommand builds "tolerex client": an interactive HaToKuSe client
// with a pipelined bulk SET, RTT measurement and CSV recording.
func newClientCommand() *cobra.Command {
	var opts clientOptions
	cmd := &cobra.Command{
		Use:   "client [--addr HOST:PORT[,HOST:PORT...]] [--measure] [--csv[=FILE]] [--id NAME] [--offset N]",
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

--addr takes one gateway or a comma-separated list of the gateways of one
group (any of them serves). The client connects to the first one that
answers, in list order. When the connection is lost (the gateway closed or
reset it, or sent no reply within --io-timeout), the client connects to the
next gateway of the list, wrapping around, so the one that failed is tried
last; it tries the whole list up to 5 times, pausing 0.2, 0.4, 0.8 and 1.6 s
between passes, and gives up naming every address with its error. With one
address it reconnects to that one. A connection the gateway closed while
the client waited for input (10 ms or more) is noticed before the next
command is sent, which then goes to the next gateway with nothing in doubt
(a note on stderr says so). A command whose connection is lost after it was sent:
  - GET, PING, HELP and malformed lines have no effect: the client sends
    them once more on the new connection (if that one is lost too, it
    prints an ERROR line saying so and goes on).
  - SET and DEL may or may not have taken effect, now or later. The client
    prints one line instead of the reply,
      ERROR: connection to A lost; the outcome of "SET 7 x" is unknown (GET 7
      to see; the client does not send it again: that would be a new
      request); reconnected to B
    and goes on with the next command. It never resends them: the gateways
    recognise a request sent again only when they sent it themselves, so
    one sent again by the client would be a new write (a SET sent again
    could overwrite a later write of that id by another client).
A gateway that runs no Raft (its Raft log unusable or its disk full, or its
consensus stopped) refuses every command with "ERROR: gateway unavailable:
...", which is definite: the client sends the command, SET and DEL too, to
the next gateway instead and stays there, trying each gateway once per
command (a note on stderr says so).
A bulk run counts the requests in flight on a lost connection as outcome
unknown, reconnects and goes on with the ids it has not sent; its summary
adds how many were unknown, which ids, and where it reconnected. It gives
up (and the session ends) when 4 connections in a row are lost before a
single reply. It leaves an unavailable gateway at its first refusal: it reads
the replies in flight there and sends the refused ids, then the rest, to the
next gateway (the summary lists each gateway left and the ids it refused);
once every gateway has refused in turn with nothing served in between, the
run stops and counts the ids refused last as errors, and the session goes
on. With one address it counts refusals as error replies.

--csv appends one row per operation (one per bulk run) to FILE, default
tolerex-client-<id>.csv; "<id>" in FILE is replaced by the client id. Give
the file as --csv=FILE. The status is OK, NOT_FOUND, ERROR (an error reply;
for a bulk run, any error reply or unknown outcome) or UNKNOWN (a SET or DEL
whose connection was lost).`,
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
	flags.StringVar(&opts.addr, "addr", defaultClientAddr, "gateway HaToKuSe address (host:port), or a comma-separated list of one group's gateways to fail over between")
	flags.DurationVar(&opts.ioTimeout, "io-timeout", defaultIOTimeout, "wait this long for a reply before taking the gateway for dead and reconnecting (0: wait forever)")
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
	addrs, err := client.ParseAddrs(opts.addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	if opts.ioTimeout < 0 {
		return errors.New("--io-timeout must not be negative")
	}
	dialOpts := client.Options{DialTimeout: clientDialTimeout, IOTimeout: opts.ioTimeout}
	if opts.tlsCA != "" {
		pool, err := certs.LoadCAPool(opts.tlsCA)
		if err != nil {
			return err
		}
		dialOpts.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	}
	dialer := &client.Dialer{Addrs: addrs, Options: dialOpts, Backoff: opts.reconnectBackoff}
	conn, err := dialer.Connect(ctx, 0)
	if err != nil {
		return fmt.Errorf("connect to a gateway: %w", err)
	}
	defer conn.Close()
	// Closing the connection unblocks whatever waits on it, and stops any
	// reconnect.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	session := &clientSession{
		conn:        conn,
		addrs:       addrs,
		out:         out,
		errOut:      errOut,
		measure:     opts.measure,
		nextBulk:    opts.offset,
		interactive: isTerminal(in),
		probeAfter:  defaultProbeIdleAfter,
	}
	if opts.probeIdleAfter > 0 {
		session.probeAfter = opts.probeIdleAfter
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
	conn        *client.Failover
	addrs       []string // every gateway --addr names
	out         io.Writer
	errOut      io.Writer
	measure     bool
	recorder    *csvRecorder // nil without --csv
	nextBulk    int64        // first id of the next bulk run
	noBulkIDs   bool         // this session SET the largest id: no id is left above it
	interactive bool         // show a prompt
	lastActive  time.Time    // when the last command was done
	probeAfter  time.Duration
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
		fmt.Fprintf(s.out, "Connected to %s%s. Type HELP for commands; \"N SET <message>\" runs a pipelined bulk SET of N new ids (see tolerex client --help).\n",
			s.conn.Addr(), s.failoverNote())
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
		quit, err := s.handle(ctx, input.line)
		s.lastActive = time.Now()
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

// failoverNote names the other gateways of --addr, for the banner.
func (s *clientSession) failoverNote() string {
	if len(s.addrs) < 2 {
		return ""
	}
	var others []string
	for _, addr := range s.addrs {
		if addr != s.conn.Addr() {
			others = append(others, addr)
		}
	}
	return " (fails over to " + strings.Join(others, ", ") + ")"
}

// handle runs one input line. Invalid local input is reported and is not
// an error; the error return means the session cannot go on.
func (s *clientSession) handle(ctx context.Context, line []byte) (quit bool, err error) {
	bulk, isBulk, err := parseBulk(line)
	if isBulk {
		if err != nil {
			fmt.Fprintf(s.errOut, "error: %v\n", err)
			return false, nil
		}
		return false, s.runBulk(ctx, bulk)
	}
	command := codec.Parse(line)
	switch command.Kind {
	case codec.KindEmpty:
		return false, nil
	case codec.KindQuit:
		s.quit(line)
		return true, nil
	}
	return false, s.single(ctx, line, command)
}

// quit sends the QUIT line and prints the farewell. The session ends
// however the server answers.
func (s *clientSession) quit(line []byte) {
	reply, err := s.conn.Client().Do(string(line))
	if err != nil || reply == "" {
		reply = codec.ReplyBye
	}
	fmt.Fprintln(s.out, reply)
}

// single sends one command, prints the reply and records it. When the
// connection is lost, a command with no effect is sent once more on the
// next gateway; a SET or DEL is not (see lostWrite). A gateway that runs
// no Raft (codec.GatewayUnavailable) refuses it definitely: it is sent to
// the next gateway of --addr instead, each gateway tried once.
func (s *clientSession) single(ctx context.Context, line []byte, command codec.Command) error {
	if command.Kind == codec.KindSet {
		s.wrote(command.ID)
	}
	if err := s.checkIdle(ctx); err != nil {
		return err
	}
	for tried := 1; ; tried++ {
		start := time.Now()
		reply, err := s.conn.Client().Do(string(line))
		if client.Lost(err) && ctx.Err() == nil {
			if hasEffect(command) {
				return s.lostWrite(ctx, line, command, start, err)
			}
			lost := s.conn.Addr()
			if err := s.reconnect(ctx, lost, err); err != nil {
				return err
			}
			fmt.Fprintf(s.errOut, "connection to %s lost before %s was answered; reconnected to %s and sent it again (it has no effect)\n",
				lost, quoteCommand(line), s.conn.Addr())
			start = time.Now()
			reply, err = s.conn.Client().Do(string(line))
			if client.Lost(err) && ctx.Err() == nil {
				lostAgain := s.conn.Addr()
				reconnectErr := s.reconnect(ctx, lostAgain, err)
				fmt.Fprintf(s.out, "ERROR: connection to %s lost too before %s was answered%s\n", lostAgain, quoteCommand(line), s.reconnectedNote(reconnectErr))
				return errors.Join(reconnectErr, s.record(line, command, start, time.Since(start), statusError))
			}
		}
		rtt := time.Since(start)
		var serverErr *client.ServerError
		if err != nil && !errors.As(err, &serverErr) {
			return fmt.Errorf("connection to %s: %w", s.conn.Addr(), err)
		}
		if tried < len(s.addrs) && codec.GatewayUnavailable(reply) && ctx.Err() == nil {
			if err := s.moveOn(ctx, line, reply); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintln(s.out, reply)
		if s.measure {
			fmt.Fprintf(s.out, "(%s)\n", formatMillis(rtt))
		}
		return s.record(line, command, start, rtt, replyStatus(reply))
	}
}

// moveOn leaves a gateway that refused line because it runs no Raft for
// the next gateway of --addr. The refusal is definite, so line may be
// sent again, a SET or DEL too. Its error ends the session.
func (s *clientSession) moveOn(ctx context.Context, line []byte, reply string) error {
	from := s.conn.Addr()
	if err := s.conn.Reconnect(ctx); err != nil {
		return fmt.Errorf("gateway %s refused %s (%s), and no other gateway answered: %w", from, quoteCommand(line), reply, err)
	}
	fmt.Fprintf(s.errOut, "gateway %s cannot serve (%s); sending %s to %s instead (the refusal was definite: it had no effect)\n",
		from, strings.TrimPrefix(reply, codec.ErrorPrefix), quoteCommand(line), s.conn.Addr())
	return nil
}

// lostWrite reports a SET or DEL whose connection was lost after it was
// sent, and moves to the next gateway. It does not send the command again:
// the gateways recognise a request sent again only when they sent it
// themselves, so the client's resend would be a new write.
func (s *clientSession) lostWrite(ctx context.Context, line []byte, command codec.Command, start time.Time, cause error) error {
	rtt := time.Since(start)
	lost := s.conn.Addr()
	reconnectErr := s.reconnect(ctx, lost, cause)
	fmt.Fprintf(s.out, "ERROR: connection to %s lost; the outcome of %s is unknown (GET %d to see; the client does not send it again: that would be a new request)%s\n",
		lost, quoteCommand(line), command.ID, s.reconnectedNote(reconnectErr))
	if s.measure {
		fmt.Fprintf(s.out, "(%s)\n", formatMillis(rtt))
	}
	return errors.Join(reconnectErr, s.record(line, command, start, rtt, statusUnknown))
}

// reconnectedNote ends an ERROR line about a lost connection: where the
// client went on, or nothing if it could not (the error then ends the
// session).
func (s *clientSession) reconnectedNote(reconnectErr error) string {
	if reconnectErr != nil {
		return ""
	}
	return "; reconnected to " + s.conn.Addr()
}

// checkIdle finds a connection the gateway closed while the session was
// idle, and moves to the next gateway: nothing was in flight, so nothing
// is in doubt. A session busy with one command after another skips the
// check: a loss is then found by the command, as one in flight.
func (s *clientSession) checkIdle(ctx context.Context) error {
	if time.Since(s.lastActive) < s.probeAfter {
		return nil
	}
	err := s.conn.Client().Probe()
	if err == nil {
		return nil
	}
	if !client.Lost(err) || ctx.Err() != nil {
		return fmt.Errorf("connection to %s: %w", s.conn.Addr(), err)
	}
	lost := s.conn.Addr()
	if err := s.reconnect(ctx, lost, err); err != nil {
		return err
	}
	fmt.Fprintf(s.errOut, "connection to %s was lost while idle (nothing in flight); reconnected to %s\n", lost, s.conn.Addr())
	return nil
}

// reconnect moves to the next gateway after the connection to lost failed
// with cause. Its error ends the session.
func (s *clientSession) reconnect(ctx context.Context, lost string, cause error) error {
	if err := s.conn.Reconnect(ctx); err != nil {
		return fmt.Errorf("connection to %s lost (%v), and no gateway answered: %w", lost, cause, err)
	}
	return nil
}

// record writes one CSV row for a single command, if --csv is on and the
// command is one that is recorded.
func (s *clientSession) record(line []byte, command codec.Command, start time.Time, rtt time.Duration, status string) error {
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
		Status:    status,
	})
}

// hasEffect reports whether a command can change what is stored: SET and
// DEL. Everything else may be sent again without harm.
func hasEffect(command codec.Command) bool {
	return command.Kind == codec.KindSet || command.Kind == codec.KindDel
}

// quoteCommand quotes a command line for a message, cut short if long.
func quoteCommand(line []byte) string {
	const limit = 60
	if len(line) > limit {
		return fmt.Sprintf("%q...", line[:limit])
	}
	return fmt.Sprintf("%q", line)
}

// runBulk runs one "N SET <message>" and prints its summary, also when a
// lost connection ended it early.
func (s *clientSession) runBulk(ctx context.Context, bulk bulkRequest) error {
	if s.noBulkIDs || s.nextBulk > math.MaxInt64-int64(bulk.Count-1) {
		fmt.Fprintf(s.errOut, "error: no %d ids left past the highest id this session wrote; start a session with a lower --offset\n", bulk.Count)
		return nil
	}
	if err := s.checkIdle(ctx); err != nil {
		return err
	}
	start := time.Now()
	result, err := runBulkSet(ctx, s.conn, bulk, s.nextBulk, len(s.addrs))
	if result.Count == 0 {
		return fmt.Errorf("bulk SET: %w", err)
	}
	s.wrote(result.FirstID + int64(result.Count) - 1)
	fmt.Fprintln(s.out, result.summary())
	if err != nil {
		return fmt.Errorf("bulk SET: %w", err)
	}
	if s.recorder == nil {
		return nil
	}
	status := statusOK
	if result.Errors > 0 || result.Unknown > 0 {
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
