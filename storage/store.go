package storage

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/storage/diskspace"
	"github.com/tolerex/tolerex/storage/internal/pebbledb"
)

// Errors reported by the store. Returned errors wrap them; test with
// errors.Is.
var (
	// ErrNotFound reports that no record exists for the requested (id, version).
	ErrNotFound = errors.New("storage: message not found")
	// ErrCorrupt reports that a stored record failed verification: its
	// checksum did not match, or Pebble found the block holding it corrupt.
	ErrCorrupt = errors.New("storage: corrupt record")
	// ErrCorruptStore reports that the store as a whole is damaged: Open
	// could not open it (a corrupt or truncated sstable, WAL or MANIFEST, a
	// missing sstable), or a background compaction hit corrupt data and the
	// store closed itself.
	ErrCorruptStore = errors.New("storage: store is corrupt")
	// ErrClosed reports an operation on a closed store.
	ErrClosed = errors.New("storage: store closed")
	// ErrDiskFull reports a put refused because the disk is nearly full
	// (see Options.Space). It is diskspace.ErrFull.
	ErrDiskFull = diskspace.ErrFull
	// ErrReadOnly reports a write to a store opened read-only.
	ErrReadOnly = errors.New("storage: store is open read-only")
	// ErrNoStore reports a read-only Open of a store that was never
	// created.
	ErrNoStore = errors.New("storage: no store to open read-only")
	// ErrWriteFailed reports that a commit failed so that Pebble cannot be
	// written again (for example its write-ahead log hit a full disk); see
	// Options.OnWriteFailure.
	ErrWriteFailed = errors.New("storage: write failed; the store takes no more writes")
	// ErrWedged is wrapped, with ErrWriteFailed, when the failed commit left
	// Pebble unable to close (seen only with Options.Sync off): the store
	// stays open for Get until the process exits.
	ErrWedged = pebbledb.ErrWedged
)

// Defaults applied to zero-valued Options fields.
const (
	// DefaultCacheBytes is the Pebble block cache size.
	DefaultCacheBytes = 32 << 20
	// DefaultMaxBatchOps is the most operations in one group commit.
	DefaultMaxBatchOps = 1024
	// DefaultMaxBatchBytes is the most payload bytes in one group commit.
	DefaultMaxBatchBytes = 8 << 20
	// QueueLength is the capacity of the submission queue; Submit blocks only
	// when this many operations are waiting for the committer.
	QueueLength = 4096
	// memTableBytes is the Pebble memtable size.
	memTableBytes = 16 << 20
	// closeFlushTimeout bounds the memtable flush Close does. A flush that
	// cannot finish (Pebble retries it forever on a full disk) is left to
	// the write-ahead log, which the next Open replays.
	closeFlushTimeout = 5 * time.Second
)

// Options configures a Store.
type Options struct {
	// Sync makes every group commit fsync before its results are reported.
	// Callers should set it; false is unsafe (see the package documentation).
	Sync bool
	// Logger receives the store's and Pebble's log output. The zero value
	// discards it.
	Logger zerolog.Logger
	// CacheBytes is the Pebble block cache size; 0 means DefaultCacheBytes.
	CacheBytes int64
	// MaxBatchOps caps the operations per group commit; 0 means
	// DefaultMaxBatchOps.
	MaxBatchOps int
	// MaxBatchBytes caps the payload bytes per group commit; 0 means
	// DefaultMaxBatchBytes. A single larger operation is committed alone.
	MaxBatchBytes int
	// OnCommit is required. The committer goroutine calls it once per
	// committed batch with one Result per operation, in submission order. It
	// must not block for long (it delays the next commit) and must not call
	// Submit or Close, since those may wait for the committer. After Close,
	// Submit calls it directly (see Submit), possibly from several goroutines
	// at once.
	OnCommit func([]Result)
	// OnCorruptStore, if set, is called once, on a goroutine of the
	// store's own, after the store closed itself because a background
	// compaction hit corrupt data (see the package documentation). err wraps
	// ErrCorruptStore; from then on Get and Submit report errors wrapping
	// both ErrClosed and ErrCorruptStore. It is not called if Close was
	// called first.
	OnCorruptStore func(err error)
	// ReadOnly opens an existing store without writing to its disk: Pebble
	// replays its write-ahead log into memory and neither flushes nor
	// compacts, so a store on a full disk still serves Get. Every Submit
	// reports ErrReadOnly. A store that does not exist yields ErrNoStore.
	ReadOnly bool
	// Space, if set, is checked before every group commit that holds puts.
	// While it refuses writes (the disk is nearly full) those puts fail
	// with its error, which wraps ErrDiskFull; deletes are still committed,
	// since they are how space comes back.
	Space *diskspace.Guard
	// OnWriteFailure, if set, is called once, on a goroutine of the store's
	// own, with an error wrapping ErrWriteFailed after a commit failed in a
	// way after which Pebble must not be written again (Pebble gave up with
	// Fatalf or a panic: for example its write-ahead log hit a full disk).
	// Usually the store has closed itself by then, without flushing; Get
	// and Submit report errors wrapping ErrClosed and ErrWriteFailed, every
	// write acknowledged before is durable, and a reopen (read-only while
	// the disk is full) serves it. If the error also wraps ErrWedged, Pebble
	// cannot be closed: the store stays open for Get, fails every Submit,
	// and Close leaves Pebble (and its lock on the directory) to the
	// process's exit. It is not called if Close was called first.
	OnWriteFailure func(err error)

	// fs is the filesystem; nil means the operating system's. Tests inject
	// faults through it.
	fs vfs.FS
}

// OpKind says what an Op does.
type OpKind uint8

const (
	// OpPut stores Payload as message (ID, Version). Each (ID, Version) is
	// to be put once: a second put replaces the payload but is counted as
	// another record.
	OpPut OpKind = iota + 1
	// OpDelete deletes message (ID, Version), whose payload is Size bytes.
	OpDelete
)

// String names the kind for logs and errors.
func (k OpKind) String() string {
	switch k {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	default:
		return fmt.Sprintf("OpKind(%d)", uint8(k))
	}
}

// Op is one write submitted to the store.
type Op struct {
	// Kind is OpPut or OpDelete.
	Kind OpKind
	// ID is the message id.
	ID int64
	// Version is the version to store or delete.
	Version uint64
	// Size is the payload size of the version OpDelete deletes, for the
	// byte count (the store does not read the record to find it).
	Size uint32
	// Payload is the message for OpPut. The store keeps a reference until the
	// op's Result is reported, so the caller must not modify it before then.
	Payload []byte
	// MayExist marks an OpPut that may repeat one already stored (the
	// leader sent the copy again after its first answer was lost): the
	// store then looks the record up and counts it only if it is new.
	MayExist bool
	// Token is returned untouched in the op's Result.
	Token any
}

// Result reports the outcome of one submitted Op.
type Result struct {
	// Token is the submitted Op's Token.
	Token any
	// Err is nil when the op is committed (durably if Options.Sync is set).
	Err error
}

// Stats are the store's counters.
type Stats struct {
	// Messages is the number of stored (id, version) records; if Open found
	// damage, only the readable ones (see Store.Damage).
	Messages uint64
	// Bytes is the sum of the stored payload lengths.
	Bytes uint64
	// Commits is the number of group commits since Open.
	Commits uint64
	// Ops is the number of operations committed since Open.
	Ops uint64
}

// Store is a member node's durable message store. Submit, Get, Stats,
// Damage and Close are safe for concurrent use.
type Store struct {
	dir            string
	db             *pebble.DB
	log            zerolog.Logger
	onCommit       func([]Result)
	onCorruptStore func(error)
	onWriteFailure func(error)
	readOnly       bool
	space          *diskspace.Guard
	writeOpts      *pebble.WriteOptions
	maxOps         int
	maxBytes       int
	queue          chan Op
	committerWG    sync.WaitGroup

	// damage is the first damage countRecords skipped; set before the
	// committer starts and never changed after.
	damage error
	// writeFailed is the commit failure after which Pebble must not be
	// written again, and wedged says Pebble cannot be closed either; only
	// the committer sets them, shutdown reads them after the committer
	// ended.
	writeFailed error
	wedged      bool

	// submitMu guards closed, closeReason and sending on queue: Submit
	// holds it for reading, shutdown for writing while it closes the queue.
	submitMu    sync.RWMutex
	closed      bool
	closeReason error // ErrClosed, or why the store closed itself

	// dbMu guards dbClosed against Get racing with the final Pebble Close.
	// Get reads closeReason only after seeing dbClosed, which shutdown sets
	// after closeReason.
	dbMu     sync.RWMutex
	dbClosed bool

	closeOnce sync.Once
	closeErr  error

	messages atomic.Uint64
	bytes    atomic.Uint64
	commits  atomic.Uint64
	ops      atomic.Uint64
}

// Open opens (creating if needed, unless Options.ReadOnly) the store in
// dir, counts the records it already holds and starts the committer
// goroutine. A store whose files are damaged so that it cannot be opened
// yields an error wrapping ErrCorruptStore; records that cannot be read
// while counting do not fail Open (see Damage).
func Open(dir string, opts Options) (*Store, error) {
	if opts.OnCommit == nil {
		return nil, fmt.Errorf("open store %s: Options.OnCommit is required", dir)
	}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	if opts.MaxBatchOps <= 0 {
		opts.MaxBatchOps = DefaultMaxBatchOps
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = DefaultMaxBatchBytes
	}
	log := opts.Logger.With().Str("component", "storage").Str("dir", dir).Logger()
	guard := &corruptionGuard{}
	db, err := pebbledb.Open(dir, pebbledb.Options{
		CacheBytes:             opts.CacheBytes,
		MemTableBytes:          memTableBytes,
		Logger:                 log,
		DisableTableStats:      true,
		OnBackgroundCorruption: guard.report,
		ReadOnly:               opts.ReadOnly,
		FS:                     opts.fs,
	})
	if err != nil {
		if errors.Is(err, pebbledb.ErrNoDatabase) {
			return nil, fmt.Errorf("open store %s: %w", dir, ErrNoStore)
		}
		if pebbledb.IsDamage(err) {
			return nil, fmt.Errorf("open store %s: %w: %w", dir, ErrCorruptStore, pebbledb.Readable(err))
		}
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}

	s := &Store{
		dir:            dir,
		db:             db,
		log:            log,
		onCommit:       opts.OnCommit,
		onCorruptStore: opts.OnCorruptStore,
		onWriteFailure: opts.OnWriteFailure,
		readOnly:       opts.ReadOnly,
		space:          opts.Space,
		maxOps:         opts.MaxBatchOps,
		maxBytes:       opts.MaxBatchBytes,
		queue:          make(chan Op, QueueLength),
	}
	s.writeOpts = pebbledb.WriteOptions(opts.Sync)
	if err := s.countRecords(); err != nil {
		if closeErr := db.Close(); closeErr != nil {
			err = errors.Join(err, fmt.Errorf("close pebble: %w", closeErr))
		}
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	log.Debug().Uint64("messages", s.messages.Load()).Uint64("bytes", s.bytes.Load()).
		Bool("sync", opts.Sync).Bool("read_only", opts.ReadOnly).Msg("store opened")

	if opts.ReadOnly {
		// Nothing to commit: Submit answers every op itself.
		s.closed, s.closeReason = true, ErrReadOnly
		return s, nil
	}
	s.committerWG.Add(1)
	go s.commitLoop()
	if err := guard.attach(s.closeOnCorruption); err != nil {
		// A compaction started by Open already hit corrupt data.
		err = fmt.Errorf("open store %s: %w: background job: %w", dir, ErrCorruptStore, pebbledb.Readable(err))
		if closeErr := s.Close(); closeErr != nil {
			err = errors.Join(err, closeErr)
		}
		return nil, err
	}
	return s, nil
}

// corruptionGuard receives Pebble's reports of damage found by background
// jobs. It remembers the first one and hands it to the store once the
// store is built; reports before that fail Open.
type corruptionGuard struct {
	mu        sync.Mutex
	first     error
	onCorrupt func(error)
}

// report is pebbledb.Options.OnBackgroundCorruption: Pebble calls it with
// its mutex held, so it only records the error and hands it on.
func (g *corruptionGuard) report(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.first != nil {
		return
	}
	g.first = err
	if g.onCorrupt != nil {
		g.onCorrupt(err)
	}
}

// attach makes onCorrupt receive the first report, or returns the report
// that already arrived.
func (g *corruptionGuard) attach(onCorrupt func(error)) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.first != nil {
		return g.first
	}
	g.onCorrupt = onCorrupt
	return nil
}

// closeOnCorruption closes the store after a background compaction hit
// corrupt data. Pebble retries a failed L0 compaction at once and forever,
// so an open store would keep a CPU core busy; closing it stops that. It
// runs on a goroutine of its own because Pebble calls it with its mutex
// held.
func (s *Store) closeOnCorruption(cause error) {
	go func() {
		err := fmt.Errorf("store %s: %w: background job: %w", s.dir, ErrCorruptStore, pebbledb.Readable(cause))
		s.log.Error().Err(err).Msg("closing the store: a background compaction hit corrupt data")
		if !s.shutdown(fmt.Errorf("%w: %w", ErrClosed, err)) {
			return // Close came first
		}
		if s.onCorruptStore != nil {
			s.onCorruptStore(err)
		}
	}()
}

// closeOnWriteFailure closes the store after a commit after which Pebble
// must not be written again, and reports it. It runs on a goroutine of its
// own because the committer, which calls it, must go on to fail the ops
// still queued while shutdown waits for it.
func (s *Store) closeOnWriteFailure(cause error) {
	go func() {
		err := fmt.Errorf("store %s: %w: %w", s.dir, ErrWriteFailed, cause)
		s.log.Error().Err(err).Msg("closing the store: a commit failed and Pebble cannot be written again")
		if !s.shutdown(fmt.Errorf("%w: %w", ErrClosed, err)) {
			return // Close came first
		}
		if s.onWriteFailure != nil {
			s.onWriteFailure(err)
		}
	}()
}

// ReadOnly reports whether the store was opened read-only.
func (s *Store) ReadOnly() bool { return s.readOnly }

// Damage returns the first damage Open found while counting the stored
// records, or nil. Records in the damaged part of the store are not counted
// in Stats and yield errors wrapping ErrCorrupt from Get; the rest of the
// store is served as usual.
func (s *Store) Damage() error {
	return s.damage
}

// Submit queues op for the committer and returns at once unless QueueLength
// ops are already waiting, in which case it waits for room. Its Result is
// reported through Options.OnCommit. After Close has begun, or on a store
// opened read-only, Submit reports an error Result (wrapping ErrClosed, or
// ErrReadOnly) by calling OnCommit itself, on the caller's goroutine,
// before it returns.
func (s *Store) Submit(op Op) {
	s.submitMu.RLock()
	if s.closed {
		reason := s.closeReason
		s.submitMu.RUnlock()
		s.onCommit([]Result{{Token: op.Token, Err: fmt.Errorf("submit %s %d/%d: %w", op.Kind, op.ID, op.Version, reason)}})
		return
	}
	s.queue <- op
	s.submitMu.RUnlock()
}

// Get returns a copy of the payload stored as (id, version). A missing record
// yields an error wrapping ErrNotFound; a damaged one (a checksum mismatch in
// the record or in the Pebble block holding it, an unreadable sstable) an
// error wrapping ErrCorrupt, never the damaged bytes; and a closed store
// ErrClosed.
func (s *Store) Get(id int64, version uint64) ([]byte, error) {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.dbClosed {
		return nil, fmt.Errorf("get %d/%d: %w", id, version, s.closeReason)
	}
	key := encodeKey(id, version)
	value, closer, err := s.db.Get(key)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		return nil, fmt.Errorf("get %d/%d: %w", id, version, ErrNotFound)
	case pebbledb.IsDamage(err):
		return nil, fmt.Errorf("get %d/%d: %w: %w", id, version, ErrCorrupt, pebbledb.Readable(err))
	case err != nil:
		return nil, fmt.Errorf("get %d/%d: %w", id, version, err)
	}
	payload, err := decodeValue(key, value)
	if err != nil {
		_ = closer.Close()
		return nil, fmt.Errorf("get %d/%d: %w", id, version, err)
	}
	out := make([]byte, len(payload))
	copy(out, payload)
	if err := closer.Close(); err != nil {
		return nil, fmt.Errorf("get %d/%d: release value: %w", id, version, err)
	}
	return out, nil
}

// Stats returns the current counters.
func (s *Store) Stats() Stats {
	return Stats{
		Messages: s.messages.Load(),
		Bytes:    s.bytes.Load(),
		Commits:  s.commits.Load(),
		Ops:      s.ops.Load(),
	}
}

// Close stops accepting operations, commits everything already queued
// (reporting each op's Result as usual), waits for the committer goroutine,
// flushes Pebble's memtable to an sstable (so a reopen does not depend on
// replaying the write-ahead log) and closes Pebble. Every submitted op gets
// exactly one Result. Calling Close again, or after the store closed itself
// (see Options.OnCorruptStore), returns the first close's result.
func (s *Store) Close() error {
	s.shutdown(ErrClosed)
	return s.closeErr
}

// shutdown closes the store once; later Get and Submit calls report errors
// wrapping reason. It reports whether this call did the closing.
func (s *Store) shutdown(reason error) (closedHere bool) {
	s.closeOnce.Do(func() {
		closedHere = true
		s.submitMu.Lock()
		s.closed = true
		s.closeReason = reason
		close(s.queue)
		s.submitMu.Unlock()

		s.committerWG.Wait()

		// Gets go on while the memtable is flushed.
		var errs []error
		if err := s.flushForClose(); err != nil {
			errs = append(errs, err)
		}
		s.dbMu.Lock()
		s.dbClosed = true
		if s.wedged {
			errs = append(errs, fmt.Errorf("pebble left open (its commit pipeline is wedged: Close would block): %w", s.writeFailed))
		} else if err := s.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close pebble: %w", err))
		}
		s.dbMu.Unlock()
		if len(errs) > 0 {
			s.closeErr = fmt.Errorf("close store %s: %w", s.dir, errors.Join(errs...))
		}
		s.log.Debug().Err(s.closeErr).Msg("store closed")
	})
	return closedHere
}

// flushForClose flushes the memtable into an sstable so that the next Open
// replays no write-ahead log, unless the store cannot write (it is
// read-only, or a commit failed), waiting at most closeFlushTimeout: on a
// full disk Pebble retries a failed flush forever, and the write-ahead log
// holds everything the flush would have written anyway.
func (s *Store) flushForClose() error {
	if s.readOnly || s.writeFailed != nil {
		return nil
	}
	flushed, err := s.db.AsyncFlush()
	if err != nil {
		return fmt.Errorf("flush memtable: %w", err)
	}
	timer := time.NewTimer(closeFlushTimeout)
	defer timer.Stop()
	select {
	case <-flushed:
		return nil
	case <-timer.C:
		return fmt.Errorf("flush memtable: not done after %s (disk full?); the write-ahead log is replayed on the next open", closeFlushTimeout)
	}
}

// commitLoop is the committer goroutine: it gathers queued ops into batches
// and commits them until the queue is closed and empty.
func (s *Store) commitLoop() {
	defer s.committerWG.Done()
	pebbledb.GroupCommit(s.queue, s.maxOps, s.maxBytes,
		func(op Op) int { return len(op.Payload) },
		func(batch []Op) { s.onCommit(s.commit(batch)) })
}

// commit applies batch to one indexed Pebble batch, commits it and returns
// one Result per op. Stats change only if the commit succeeds. Puts are
// refused while Options.Space refuses writes; after a commit Pebble gave
// up on, nothing is committed again.
func (s *Store) commit(batch []Op) []Result {
	results := make([]Result, len(batch))
	for i, op := range batch {
		results[i].Token = op.Token
	}
	if s.writeFailed != nil {
		for i, op := range batch {
			results[i].Err = fmt.Errorf("%s %d/%d: %w", op.Kind, op.ID, op.Version, s.writeFailed)
		}
		return results
	}
	refused := s.refusePuts(batch)
	pb := s.db.NewBatch()
	defer func() {
		if err := pb.Close(); err != nil {
			s.log.Error().Err(err).Msg("release pebble batch")
		}
	}()

	var messageDelta, byteDelta int64
	for i, op := range batch {
		var (
			messages, bytes int64
			err             error
		)
		switch {
		case op.Kind == OpPut && refused != nil:
			err = refused
		case op.Kind == OpPut && op.MayExist && s.holds(op, batch[:i]):
			err = restagePut(pb, op) // stored before: written again, not counted again
		case op.Kind == OpPut:
			messages, bytes, err = applyPut(pb, op)
		case op.Kind == OpDelete:
			messages, bytes, err = applyDelete(pb, op)
		default:
			err = fmt.Errorf("unknown op kind %d", op.Kind)
		}
		if err != nil {
			results[i].Err = fmt.Errorf("%s %d/%d: %w", op.Kind, op.ID, op.Version, err)
			continue
		}
		messageDelta += messages
		byteDelta += bytes
	}
	if pb.Empty() {
		return results
	}

	if err := pebbledb.Commit(pb, s.writeOpts); err != nil {
		err = fmt.Errorf("commit batch of %d ops in %s: %w", len(batch), s.dir, err)
		if errors.Is(err, pebbledb.ErrFatal) {
			s.writeFailed = fmt.Errorf("%w: %w", ErrWriteFailed, err)
			err = s.writeFailed
			if errors.Is(err, ErrWedged) {
				s.wedged = true
				s.log.Error().Err(err).Msg("a commit failed and left Pebble unable to close: the store serves reads until the process exits")
				if s.onWriteFailure != nil {
					go s.onWriteFailure(fmt.Errorf("store %s: %w", s.dir, err))
				}
			} else {
				s.closeOnWriteFailure(err)
			}
		}
		s.log.Error().Err(err).Msg("group commit failed")
		for i := range results {
			if results[i].Err == nil {
				results[i].Err = err
			}
		}
		return results
	}
	// Only the committer changes messages and bytes, so load-then-store is
	// safe; readers see either the old or the new value.
	s.messages.Store(addClamped(s.messages.Load(), messageDelta))
	s.bytes.Store(addClamped(s.bytes.Load(), byteDelta))
	s.commits.Add(1)
	s.ops.Add(uint64(len(batch)))
	return results
}

// refusePuts checks the free space if batch holds a put and returns the
// error its puts fail with, or nil if they may be written.
func (s *Store) refusePuts(batch []Op) error {
	if s.space == nil {
		return nil
	}
	for _, op := range batch {
		if op.Kind == OpPut {
			st := s.space.Check()
			if !st.Refusing {
				return nil
			}
			return s.space.Watermark().FullError(st.Free)
		}
	}
	return nil
}

// addClamped adds delta to a counter without going below zero: a delete
// of a record that was never counted (never stored, or in a block Open
// could not read) must not wrap the counter around.
func addClamped(v uint64, delta int64) uint64 {
	if delta < 0 && uint64(-delta) > v {
		return 0
	}
	return uint64(int64(v) + delta)
}

// applyPut writes op into pb and returns the change in stored records and
// payload bytes. It reads nothing: the leader sends an (id, version) to a
// member once, but for a copy it sends again after the first attempt went
// unanswered (Op.MayExist, looked up by holds first), so a put is a new
// record. Keeping reads off the write path keeps a write's cost flat as the
// store grows beyond its cache.
func applyPut(pb *pebble.Batch, op Op) (messages, bytes int64, err error) {
	if err := restagePut(pb, op); err != nil {
		return 0, 0, err
	}
	return 1, int64(len(op.Payload)), nil
}

// restagePut writes op into pb without counting it. The value is encoded
// straight into the batch: with Set it would be built first and copied
// in, one more copy of every payload (measured: with 4 MB messages the
// members' time goes to copying).
func restagePut(pb *pebble.Batch, op Op) error {
	key := encodeKey(op.ID, op.Version)
	d := pb.SetDeferred(len(key), valueLen(len(op.Payload)))
	copy(d.Key, key)
	encodeValue(d.Value, key, op.Payload)
	if err := d.Finish(); err != nil {
		return fmt.Errorf("stage value: %w", err)
	}
	return nil
}

// holds reports whether the store already has op's (id, version): committed
// before, or put by an op earlier in the same commit (before). A failed
// lookup counts as absent: at worst the record is counted twice.
func (s *Store) holds(op Op, before []Op) bool {
	for _, b := range before {
		if b.Kind == OpPut && b.ID == op.ID && b.Version == op.Version {
			return true
		}
	}
	_, closer, err := s.db.Get(encodeKey(op.ID, op.Version))
	if err != nil {
		return false
	}
	if err := closer.Close(); err != nil {
		s.log.Error().Err(err).Msg("release a looked-up record")
	}
	return true
}

// applyDelete deletes exactly (op.ID, op.Version) from pb and returns the
// (negative) change in stored records and payload bytes, taking the
// payload size from op.Size rather than reading the record.
func applyDelete(pb *pebble.Batch, op Op) (messages, bytes int64, err error) {
	if err := pb.Delete(encodeKey(op.ID, op.Version), nil); err != nil {
		return 0, 0, fmt.Errorf("stage delete: %w", err)
	}
	return -1, -int64(op.Size), nil
}
