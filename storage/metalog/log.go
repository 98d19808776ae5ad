package metalog

import (
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/storage/internal/pebbledb"
)

// Errors reported by the log. Returned errors wrap them; test with errors.Is.
var (
	// ErrCorrupt reports stored data that failed verification.
	ErrCorrupt = errors.New("metalog: corrupt data")
	// ErrClosed reports an operation on a closed log.
	ErrClosed = errors.New("metalog: log closed")
	// ErrFailed reports a request refused because an earlier commit failed;
	// the log must be closed and reopened.
	ErrFailed = errors.New("metalog: an earlier commit failed")
	// ErrBadSnapshot reports a Snapshot call with an impossible seq.
	ErrBadSnapshot = errors.New("metalog: bad snapshot seq")
)

// Defaults applied to zero-valued Options fields.
const (
	// DefaultMaxBatchRequests is the most requests in one group commit.
	DefaultMaxBatchRequests = 1024
	// DefaultMaxBatchBytes is the most data bytes in one group commit.
	DefaultMaxBatchBytes = 8 << 20
	// QueueLength is the capacity of the request queue; Append and Snapshot
	// block only when this many requests wait for the committer.
	QueueLength = 4096
	// cacheBytes and memTableBytes size Pebble modestly: the log is written
	// far more than it is read.
	cacheBytes    = 8 << 20
	memTableBytes = 16 << 20
)

// Options configures a Log.
type Options struct {
	// Sync makes every group commit fsync before it is reported. Callers
	// should set it; false is unsafe (see the package documentation).
	Sync bool
	// Logger receives the log's and Pebble's log output. The zero value
	// discards it.
	Logger zerolog.Logger
	// MaxBatchRequests caps the appends and snapshots per group commit; 0
	// means DefaultMaxBatchRequests.
	MaxBatchRequests int
	// MaxBatchBytes caps the data bytes per group commit; 0 means
	// DefaultMaxBatchBytes. A single larger request is committed alone.
	MaxBatchBytes int
	// OnCommit is required. The committer goroutine calls it once per batch
	// that holds appends, with one Committed per append in append order, only
	// after the batch is durable (or failed). It must not call Append,
	// Snapshot or Close, since those may wait for the committer. After Close,
	// Append calls it directly (see Append), possibly from several goroutines
	// at once.
	OnCommit func([]Committed)
	// OnSnapshot, if set, is called from the committer goroutine after each
	// snapshot was written (err nil) or refused or failed. After Close,
	// Snapshot calls it directly. The restrictions on OnCommit apply.
	// Without it, failures are only logged.
	OnSnapshot func(seq uint64, err error)
}

// Committed reports the outcome of one Append.
type Committed struct {
	// Seq is the entry's sequence number (0 if it was refused by a closed
	// log and never got one).
	Seq uint64
	// Token is the Append's token.
	Token any
	// Err is nil when the entry is stored (durably if Options.Sync is set).
	Err error
}

// Stats are the log's counters.
type Stats struct {
	// Entries is the number of entries committed since Open.
	Entries uint64
	// Commits is the number of group commits since Open.
	Commits uint64
	// Snapshots is the number of snapshots written since Open.
	Snapshots uint64
	// LastSeq is the last durable sequence number.
	LastSeq uint64
	// SnapshotSeq is the seq of the stored snapshot (0 if none).
	SnapshotSeq uint64
	// EntriesSinceSnapshot is LastSeq - SnapshotSeq: the entries Load would
	// replay after the snapshot.
	EntriesSinceSnapshot uint64
}

// request is one queued Append or Snapshot.
type request struct {
	snapshot bool
	seq      uint64
	data     []byte
	token    any
	// err, if set, is reported instead of writing (a refused snapshot).
	err error
}

// Log is the durable metadata log. Append, Snapshot, LastSeq, Stats and
// Close are safe for concurrent use.
type Log struct {
	dir         string
	db          *pebble.DB
	log         zerolog.Logger
	opts        Options
	writeOpts   *pebble.WriteOptions
	queue       chan request
	committerWG sync.WaitGroup

	// mu guards the fields below and orders sends on queue with sequence
	// number assignment.
	mu sync.Mutex
	// closed is set by Close.
	closed bool
	// started is set by the first Append or Snapshot; Load must come first.
	started bool
	// loaded is set by Load, which may run once.
	loaded bool
	// nextSnapshotFloor is the lowest seq a new Snapshot may use: the
	// highest one requested so far.
	nextSnapshotFloor uint64

	// assignedSeq is the last sequence number handed out (written under mu).
	assignedSeq atomic.Uint64

	// failed is the first commit error; only the committer touches it.
	failed error

	closeOnce sync.Once
	closeErr  error

	durableSeq  atomic.Uint64
	snapshotSeq atomic.Uint64
	entries     atomic.Uint64
	commits     atomic.Uint64
	snapshots   atomic.Uint64
}

// Open opens (creating if needed) the log in dir and starts its committer.
func Open(dir string, opts Options) (*Log, error) {
	if opts.OnCommit == nil {
		return nil, fmt.Errorf("open metadata log %s: Options.OnCommit is required", dir)
	}
	if opts.MaxBatchRequests <= 0 {
		opts.MaxBatchRequests = DefaultMaxBatchRequests
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = DefaultMaxBatchBytes
	}
	log := opts.Logger.With().Str("component", "metalog").Str("dir", dir).Logger()
	db, err := pebbledb.Open(dir, pebbledb.Options{CacheBytes: cacheBytes, MemTableBytes: memTableBytes, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open metadata log %s: %w", dir, err)
	}
	l := &Log{
		dir:   dir,
		db:    db,
		log:   log,
		opts:  opts,
		queue: make(chan request, QueueLength),
	}
	l.writeOpts = pebbledb.WriteOptions(opts.Sync)
	if err := l.readPosition(); err != nil {
		if closeErr := db.Close(); closeErr != nil {
			err = errors.Join(err, fmt.Errorf("close pebble: %w", closeErr))
		}
		return nil, fmt.Errorf("open metadata log %s: %w", dir, err)
	}
	log.Debug().Uint64("last_seq", l.durableSeq.Load()).Uint64("snapshot_seq", l.snapshotSeq.Load()).
		Bool("sync", opts.Sync).Msg("metadata log opened")
	l.committerWG.Add(1)
	go l.commitLoop()
	return l, nil
}

// readPosition finds the stored snapshot seq and the last stored seq.
func (l *Log) readPosition() error {
	var snapshotSeq uint64
	header, found, err := l.readHeader()
	if err != nil {
		return err
	}
	if found {
		snapshotSeq = header.seq
	}
	last := snapshotSeq
	iter, err := l.db.NewIter(&pebble.IterOptions{
		LowerBound: entryKey(0),
		UpperBound: entriesUpperBound(),
	})
	if err != nil {
		return fmt.Errorf("find last entry: %w", err)
	}
	if iter.Last() {
		seq, err := decodeEntryKey(iter.Key())
		if err != nil {
			_ = iter.Close()
			return fmt.Errorf("find last entry: %w", err)
		}
		last = max(last, seq)
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("find last entry: %w", err)
	}
	l.snapshotSeq.Store(snapshotSeq)
	l.durableSeq.Store(last)
	l.assignedSeq.Store(last)
	l.nextSnapshotFloor = snapshotSeq
	return nil
}

// readHeader returns the stored snapshot header, if there is one.
func (l *Log) readHeader() (snapshotHeader, bool, error) {
	value, closer, err := l.db.Get([]byte(headerKey))
	if errors.Is(err, pebble.ErrNotFound) {
		return snapshotHeader{}, false, nil
	}
	if err != nil {
		return snapshotHeader{}, false, fmt.Errorf("read snapshot header: %w", corruption(err))
	}
	h, err := decodeHeader(value)
	if closeErr := closer.Close(); err == nil && closeErr != nil {
		err = closeErr
	}
	if err != nil {
		return snapshotHeader{}, false, fmt.Errorf("read snapshot header: %w", err)
	}
	return h, true, nil
}

// corruption marks Pebble's own corruption errors with ErrCorrupt.
func corruption(err error) error {
	if pebble.IsCorruptionError(err) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// Load replays the log: it calls snapshot with the stored snapshot, if any,
// and then entry with every entry after it, in order. The data slices are the
// callbacks' to keep. It must be called at most once, before the first Append
// or Snapshot; the callbacks must not call Append, Snapshot or Close (Load
// holds the log's lock while it runs). A callback's error stops the replay and is returned wrapped;
// damaged or missing data yields an error wrapping ErrCorrupt.
func (l *Log) Load(snapshot func(seq uint64, data []byte) error, entry func(seq uint64, data []byte) error) error {
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return fmt.Errorf("load metadata log %s: %w", l.dir, ErrClosed)
	case l.started:
		l.mu.Unlock()
		return fmt.Errorf("load metadata log %s: Load must come before Append and Snapshot", l.dir)
	case l.loaded:
		l.mu.Unlock()
		return fmt.Errorf("load metadata log %s: already loaded", l.dir)
	}
	l.loaded = true
	// Holding mu keeps Append, Snapshot and Close out while Load reads.
	defer l.mu.Unlock()

	if err := l.load(snapshot, entry); err != nil {
		return fmt.Errorf("load metadata log %s: %w", l.dir, err)
	}
	return nil
}

func (l *Log) load(snapshot func(seq uint64, data []byte) error, entry func(seq uint64, data []byte) error) error {
	header, found, err := l.readHeader()
	if err != nil {
		return err
	}
	var next uint64 = 1
	if found {
		data, err := l.readSnapshot(header)
		if err != nil {
			return err
		}
		if err := snapshot(header.seq, data); err != nil {
			return fmt.Errorf("apply snapshot %d: %w", header.seq, err)
		}
		next = header.seq + 1
	}
	iter, err := l.db.NewIter(&pebble.IterOptions{
		LowerBound: entryKey(next),
		UpperBound: entriesUpperBound(),
	})
	if err != nil {
		return fmt.Errorf("read entries: %w", err)
	}
	defer func() { _ = iter.Close() }()
	for valid := iter.First(); valid; valid = iter.Next() {
		seq, err := decodeEntryKey(iter.Key())
		if err != nil {
			return err
		}
		if seq != next {
			return fmt.Errorf("entry %d follows %d: entries missing: %w", seq, next-1, ErrCorrupt)
		}
		value, err := iter.ValueAndErr()
		if err != nil {
			return fmt.Errorf("read entry %d: %w", seq, corruption(err))
		}
		data, err := decodeEntry(seq, value)
		if err != nil {
			return err
		}
		if err := entry(seq, append([]byte(nil), data...)); err != nil {
			return fmt.Errorf("apply entry %d: %w", seq, err)
		}
		next++
	}
	if err := iter.Error(); err != nil {
		return fmt.Errorf("read entries: %w", corruption(err))
	}
	if last := l.durableSeq.Load(); next-1 != last {
		return fmt.Errorf("entries end at %d, log position is %d: %w", next-1, last, ErrCorrupt)
	}
	return nil
}

// readSnapshot reads and verifies the chunks header describes.
func (l *Log) readSnapshot(header snapshotHeader) ([]byte, error) {
	iter, err := l.db.NewIter(&pebble.IterOptions{
		LowerBound: chunkSeqLowerBound(header.seq),
		UpperBound: chunkSeqUpperBound(header.seq),
	})
	if err != nil {
		return nil, fmt.Errorf("read snapshot %d: %w", header.seq, err)
	}
	defer func() { _ = iter.Close() }()
	data := make([]byte, 0, min(header.totalLen, 64<<20))
	var chunks uint32
	for valid := iter.First(); valid; valid = iter.Next() {
		if want := chunkKey(header.seq, chunks); string(iter.Key()) != string(want) {
			return nil, fmt.Errorf("read snapshot %d: chunk key %x, want %x: %w", header.seq, iter.Key(), want, ErrCorrupt)
		}
		value, err := iter.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("read snapshot %d chunk %d: %w", header.seq, chunks, corruption(err))
		}
		if uint64(len(data))+uint64(len(value)) > header.totalLen {
			return nil, fmt.Errorf("read snapshot %d: chunks exceed %d bytes: %w", header.seq, header.totalLen, ErrCorrupt)
		}
		data = append(data, value...)
		chunks++
	}
	if err := iter.Error(); err != nil {
		return nil, fmt.Errorf("read snapshot %d: %w", header.seq, corruption(err))
	}
	if chunks != header.chunks || uint64(len(data)) != header.totalLen {
		return nil, fmt.Errorf("read snapshot %d: %d chunks of %d bytes, header says %d of %d: %w",
			header.seq, chunks, len(data), header.chunks, header.totalLen, ErrCorrupt)
	}
	if got := crc32.Checksum(data, castagnoli); got != header.checksum {
		return nil, fmt.Errorf("read snapshot %d: checksum mismatch: stored %08x, computed %08x: %w",
			header.seq, header.checksum, got, ErrCorrupt)
	}
	return data, nil
}

// Append queues data as the next entry and returns at once unless
// QueueLength requests are waiting, in which case it waits for room. The
// entry gets the next sequence number, in call order. Its outcome is
// reported through Options.OnCommit. After Close has begun, Append reports
// Committed{Token: token, Err: ErrClosed} by calling OnCommit itself, on the
// caller's goroutine, before it returns. The caller must not modify data
// afterwards.
func (l *Log) Append(data []byte, token any) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.opts.OnCommit([]Committed{{Token: token, Err: fmt.Errorf("append: %w", ErrClosed)}})
		return
	}
	l.started = true
	seq := l.assignedSeq.Load() + 1
	l.assignedSeq.Store(seq)
	l.queue <- request{seq: seq, data: data, token: token}
	l.mu.Unlock()
}

// Snapshot queues data as the snapshot at seq, ordered after every earlier
// Append: when it commits, it replaces the stored snapshot and deletes every
// entry <= seq in the same batch. seq must not exceed the last sequence
// number handed out by Append and must not be below an earlier snapshot's
// seq; otherwise it is refused with ErrBadSnapshot. The outcome is reported
// through Options.OnSnapshot (called directly, on the caller's goroutine,
// with ErrClosed after Close has begun). The caller must not modify data
// afterwards.
func (l *Log) Snapshot(seq uint64, data []byte) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.reportSnapshot(seq, fmt.Errorf("snapshot %d: %w", seq, ErrClosed))
		return
	}
	l.started = true
	req := request{snapshot: true, seq: seq, data: data}
	switch last := l.assignedSeq.Load(); {
	case seq > last:
		req.err = fmt.Errorf("snapshot %d is past the last entry %d: %w", seq, last, ErrBadSnapshot)
	case seq < l.nextSnapshotFloor:
		req.err = fmt.Errorf("snapshot %d is older than snapshot %d: %w", seq, l.nextSnapshotFloor, ErrBadSnapshot)
	default:
		l.nextSnapshotFloor = seq
	}
	l.queue <- req
	l.mu.Unlock()
}

// reportSnapshot calls OnSnapshot if set and logs failures.
func (l *Log) reportSnapshot(seq uint64, err error) {
	if err != nil {
		l.log.Error().Err(err).Uint64("seq", seq).Msg("snapshot not written")
	}
	if l.opts.OnSnapshot != nil {
		l.opts.OnSnapshot(seq, err)
	}
}

// LastSeq returns the last sequence number handed out by Append (or found on
// disk at Open); it may not be durable yet.
func (l *Log) LastSeq() uint64 {
	return l.assignedSeq.Load()
}

// Stats returns the current counters.
func (l *Log) Stats() Stats {
	last, snap := l.durableSeq.Load(), l.snapshotSeq.Load()
	return Stats{
		Entries:              l.entries.Load(),
		Commits:              l.commits.Load(),
		Snapshots:            l.snapshots.Load(),
		LastSeq:              last,
		SnapshotSeq:          snap,
		EntriesSinceSnapshot: last - min(snap, last),
	}
}

// Close stops accepting requests, commits everything already queued
// (reporting it as usual), waits for the committer and closes Pebble.
// Calling Close again returns the first call's result.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.queue)
		l.mu.Unlock()

		l.committerWG.Wait()
		if err := l.db.Close(); err != nil {
			l.closeErr = fmt.Errorf("close metadata log %s: %w", l.dir, err)
		}
		l.log.Debug().Err(l.closeErr).Uint64("last_seq", l.durableSeq.Load()).Msg("metadata log closed")
	})
	return l.closeErr
}

// commitLoop is the committer goroutine: it gathers queued requests into
// batches and commits them until the queue is closed and empty.
func (l *Log) commitLoop() {
	defer l.committerWG.Done()
	pebbledb.GroupCommit(l.queue, l.opts.MaxBatchRequests, l.opts.MaxBatchBytes,
		func(r request) int { return len(r.data) }, l.commit)
}

// commit writes batch in one Pebble batch, commits it and reports the
// outcome of every request.
func (l *Log) commit(batch []request) {
	err := l.failed
	if err == nil {
		err = l.write(batch)
		if err != nil {
			l.failed = err
			l.log.Error().Err(err).Msg("group commit failed; the log refuses further writes")
		}
	} else {
		err = fmt.Errorf("%w: %w", ErrFailed, err)
	}

	var appended []Committed
	var lastEntry uint64
	for _, req := range batch {
		if !req.snapshot {
			appended = append(appended, Committed{Seq: req.seq, Token: req.token, Err: err})
			lastEntry = req.seq
		}
	}
	if err == nil {
		l.commits.Add(1)
		l.entries.Add(uint64(len(appended)))
		if lastEntry != 0 {
			l.durableSeq.Store(lastEntry)
		}
		for _, req := range batch {
			if req.snapshot && req.err == nil {
				l.snapshotSeq.Store(req.seq)
				l.snapshots.Add(1)
			}
		}
	}
	if len(appended) > 0 {
		l.opts.OnCommit(appended)
	}
	for _, req := range batch {
		if !req.snapshot {
			continue
		}
		switch {
		case req.err != nil:
			l.reportSnapshot(req.seq, req.err)
		case err != nil:
			l.reportSnapshot(req.seq, fmt.Errorf("snapshot %d: %w", req.seq, err))
		default:
			l.log.Debug().Uint64("seq", req.seq).Int("bytes", len(req.data)).Msg("snapshot written")
			l.reportSnapshot(req.seq, nil)
		}
	}
}

// write stages batch into one Pebble batch and commits it.
func (l *Log) write(batch []request) error {
	pb := l.db.NewBatch()
	defer func() {
		if err := pb.Close(); err != nil {
			l.log.Error().Err(err).Msg("release pebble batch")
		}
	}()
	for _, req := range batch {
		var err error
		switch {
		case !req.snapshot:
			err = pb.Set(entryKey(req.seq), encodeEntry(req.seq, req.data), nil)
		case req.err == nil:
			err = stageSnapshot(pb, req.seq, req.data)
		}
		if err != nil {
			return fmt.Errorf("stage seq %d: %w", req.seq, err)
		}
	}
	if err := pb.Commit(l.writeOpts); err != nil {
		return fmt.Errorf("commit batch of %d requests in %s: %w", len(batch), l.dir, err)
	}
	return nil
}

// stageSnapshot adds to pb the deletion of every entry <= seq and of every
// older snapshot chunk, then the new chunks and header. Operations in a
// Pebble batch apply in order, so the range deletions do not hide the chunks
// written after them (even for a second snapshot at the same seq) but do
// remove entries staged earlier in the same batch.
func stageSnapshot(pb *pebble.Batch, seq uint64, data []byte) error {
	if err := pb.DeleteRange(entryKey(0), entryThroughBound(seq), nil); err != nil {
		return fmt.Errorf("delete entries: %w", err)
	}
	if err := pb.DeleteRange(chunksLowerBound(), chunkSeqUpperBound(seq), nil); err != nil {
		return fmt.Errorf("delete old chunks: %w", err)
	}
	header := snapshotHeader{seq: seq, totalLen: uint64(len(data)), checksum: crc32.Checksum(data, castagnoli)}
	for start := 0; start < len(data); start += ChunkBytes {
		end := min(start+ChunkBytes, len(data))
		if err := pb.Set(chunkKey(seq, header.chunks), data[start:end], nil); err != nil {
			return fmt.Errorf("stage chunk %d: %w", header.chunks, err)
		}
		header.chunks++
	}
	if err := pb.Set([]byte(headerKey), header.encode(), nil); err != nil {
		return fmt.Errorf("stage header: %w", err)
	}
	return nil
}
