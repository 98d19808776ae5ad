package raftlog

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/tolerex/tolerex/storage/internal/pebbledb"
)

// Defaults applied to zero-valued Options fields.
const (
	// DefaultMaxBatchRequests is the most requests in one group commit.
	DefaultMaxBatchRequests = 1024
	// DefaultMaxBatchBytes is the most entry and snapshot data bytes in one
	// group commit; a single larger request is committed alone.
	DefaultMaxBatchBytes = 8 << 20
	// QueueLength is the capacity of the request queue; Write and
	// CreateSnapshot block only when this many requests wait.
	QueueLength = 4096
	// cacheBytes and memTableBytes size Pebble modestly: the log is written
	// far more than it is read (reads come from the MemoryStorage).
	cacheBytes    = 8 << 20
	memTableBytes = 8 << 20
)

// Options configures a Log.
type Options struct {
	// Sync fsyncs every group commit before it is reported. Callers set it;
	// false is unsafe: a crash (even of the process alone) may lose writes
	// already reported, which breaks raft's promises (see the package
	// documentation).
	Sync bool
	// Logger receives the store's and Pebble's log output. The zero value
	// discards it.
	Logger zerolog.Logger
	// OnWritten is required. The committer goroutine calls it once per
	// group commit that holds Writes, with one Written per Write in
	// Write-call order, only after they are durable (with Sync) and
	// reflected in Storage(), so that raft, reading Storage, sees them. It
	// must not call Write, CreateSnapshot or Close. After Close has begun,
	// Write calls it directly, on the caller's goroutine.
	OnWritten func([]Written)
	// OnSnapshot, if set, is called from the committer goroutine after
	// each CreateSnapshot is stored (err nil) or refused or failed; after
	// Close has begun, CreateSnapshot calls it directly. The restrictions
	// on OnWritten apply. Without it, failures are only logged.
	OnSnapshot func(index uint64, err error)
	// MaxBatchRequests caps the requests per group commit; 0 means
	// DefaultMaxBatchRequests.
	MaxBatchRequests int
	// MaxBatchBytes caps the data bytes per group commit; 0 means
	// DefaultMaxBatchBytes.
	MaxBatchBytes int
	// FS, if set, replaces the operating system's filesystem (tests: one
	// whose fsyncs are slow).
	FS FS
	// Now, if set, replaces time.Now for the times Written reports and for
	// spacing the memory checks (tests: a clock they move themselves).
	Now func() time.Time
}

// FS is the filesystem interface the Raft log is stored through (Pebble's).
type FS = vfs.FS

// Log is the durable raft log store. Write, CreateSnapshot, Empty, Stats and
// Close are safe for concurrent use.
type Log struct {
	dir       string
	db        *pebble.DB
	log       zerolog.Logger
	opts      Options
	writeOpts *pebble.WriteOptions
	storage   *raft.MemoryStorage
	queue     chan request
	done      sync.WaitGroup
	// commitBatch commits a staged Pebble batch, fsync'd (with
	// Options.Sync) if durable says it must be; tests replace it to make
	// commits fail.
	commitBatch func(b *pebble.Batch, durable bool) error

	// mu orders sends on queue and guards closed.
	mu     sync.Mutex
	closed bool

	// damage is the first damage a Pebble background job found; the
	// committer refuses every request after it.
	damage atomic.Pointer[error]

	// The fields below belong to the committer goroutine (and to Open
	// before it starts).
	//
	// pos is what is durable and in storage.
	pos position
	// failed is the first commit error.
	failed error
	// scratch is reused to encode entries.
	scratch []byte
	// memoryMeasuredAt is when Pebble's memory was last measured.
	memoryMeasuredAt time.Time

	closeOnce sync.Once
	closeErr  error

	// readMu keeps Close from closing Pebble under a SnapshotData, which
	// holds it shared; dbClosed is set (exclusively) before Pebble closes.
	readMu   sync.RWMutex
	dbClosed bool

	counters counters
}

// Open opens (creating) the store in dir, loads the stored snapshot, hard
// state and the entries after the snapshot into a raft.MemoryStorage, and
// starts the committer. Stored data that fails verification yields an error
// wrapping ErrCorrupt.
func Open(dir string, opts Options) (*Log, error) {
	if opts.OnWritten == nil {
		return nil, fmt.Errorf("open raft log %s: Options.OnWritten is required", dir)
	}
	if opts.MaxBatchRequests <= 0 {
		opts.MaxBatchRequests = DefaultMaxBatchRequests
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger.With().Str("component", "raftlog").Str("dir", dir).Logger()
	l := &Log{
		dir:       dir,
		log:       log,
		opts:      opts,
		writeOpts: pebbledb.WriteOptions(opts.Sync),
		storage:   raft.NewMemoryStorage(),
		queue:     make(chan request, QueueLength),
	}
	// Table statistics only help compactions pick deletions; their loader
	// spins on a table with damaged metadata.
	db, err := pebbledb.Open(dir, pebbledb.Options{
		CacheBytes:             cacheBytes,
		MemTableBytes:          memTableBytes,
		Logger:                 log,
		DisableTableStats:      true,
		OnBackgroundCorruption: l.noteDamage,
		FS:                     opts.FS,
	})
	if err != nil {
		err = pebbledb.Readable(err)
		if pebbledb.IsDamage(err) {
			err = fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		return nil, fmt.Errorf("open raft log %s: %w", dir, err)
	}
	l.db = db
	// pebbledb.Commit turns Pebble's fatal commit error (a log write that
	// hit a full disk) into an error instead of ending the process.
	l.commitBatch = func(b *pebble.Batch, durable bool) error {
		if !durable {
			return pebbledb.Commit(b, pebble.NoSync)
		}
		return pebbledb.Commit(b, l.writeOpts)
	}
	pos, err := load(db, l.storage)
	if err != nil {
		if closeErr := db.Close(); closeErr != nil {
			err = errors.Join(err, fmt.Errorf("close pebble: %w", closeErr))
		}
		return nil, fmt.Errorf("open raft log %s: %w", dir, err)
	}
	l.pos = pos
	l.counters.publish(pos)
	l.counters.empty.Store(pos.empty())
	l.measureMemory(l.opts.Now())
	log.Debug().Uint64("first_index", pos.start.index+1).Uint64("last_index", pos.last).
		Uint64("snapshot_index", pos.snapshotIndex).Bool("sync", opts.Sync).Msg("raft log opened")
	l.done.Add(1)
	go l.commitLoop()
	return l, nil
}

// Storage is the raft.Storage to give raft.Config: a *raft.MemoryStorage
// kept in step with the disk. Only the store changes it. Its snapshot has
// the stored snapshot's metadata but no data: a snapshot is the whole
// state machine, and keeping a copy of it in memory would add its size to
// the heap for good. SnapshotData reads the data.
func (l *Log) Storage() *raft.MemoryStorage { return l.storage }

// SnapshotData reads the stored snapshot's data from disk, verified, if
// that snapshot is still the one at index; otherwise it fails with
// ErrSnapshotGone (a newer one replaced it). Data that fails verification
// yields an error wrapping ErrCorrupt; after Close, ErrClosed. Safe for
// concurrent use; it reads a consistent view of the store, so a snapshot
// stored meanwhile does not mix with the one read.
func (l *Log) SnapshotData(index uint64) ([]byte, error) {
	l.readMu.RLock()
	defer l.readMu.RUnlock()
	if l.dbClosed {
		return nil, fmt.Errorf("raft log snapshot %d: %w", index, ErrClosed)
	}
	view := l.db.NewSnapshot()
	defer func() { _ = view.Close() }()
	value, found, err := get(view, snapshotHeaderKey)
	if err != nil {
		return nil, fmt.Errorf("raft log snapshot %d: read header: %w", index, err)
	}
	if !found {
		return nil, fmt.Errorf("raft log snapshot %d: no snapshot stored: %w", index, ErrSnapshotGone)
	}
	header, err := decodeSnapshotHeader(value)
	if err != nil {
		return nil, fmt.Errorf("raft log snapshot %d: %w", index, err)
	}
	if header.index != index {
		return nil, fmt.Errorf("raft log snapshot %d: the stored one is at %d: %w", index, header.index, ErrSnapshotGone)
	}
	data, err := readSnapshotData(view, header)
	if err != nil {
		return nil, fmt.Errorf("raft log: %w", err)
	}
	return data, nil
}

// Empty reports whether nothing was ever stored (a new node: bootstrap it).
func (l *Log) Empty() bool { return l.counters.empty.Load() }

// Write queues w; it returns at once unless QueueLength requests wait, in
// which case it waits for room. Its outcome is reported through
// Options.OnWritten, in Write-call order. After Close has begun, Write
// reports ErrClosed by calling OnWritten itself, before it returns.
func (l *Log) Write(w Write) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.opts.OnWritten([]Written{{Token: w.Token, Err: fmt.Errorf("raft log write: %w", ErrClosed)}})
		return
	}
	l.queue <- request{write: w, queued: l.opts.Now()}
	l.mu.Unlock()
}

// CreateSnapshot queues a snapshot the caller took of its state machine
// after applying entry index. It is ordered after every earlier Write. When
// its turn comes, index must be stored, committed (not above the stored
// HardState's Commit) and above the stored snapshot's index; otherwise it is
// refused with ErrBadSnapshot. It is stored with cs and data (chunked on
// disk, checksummed), Storage() gets it without the data
// (MemoryStorage.CreateSnapshot; SnapshotData reads the data), and
// the entries up to index-keep are deleted from Storage() and the disk
// (MemoryStorage.Compact(index-keep)), so a follower that lags by up to keep
// entries catches up without a snapshot. The outcome is reported through
// Options.OnSnapshot. The store reads data until then, so the caller must
// not modify it before.
func (l *Log) CreateSnapshot(index uint64, cs *raftpb.ConfState, data []byte, keep uint64) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.reportSnapshot(index, fmt.Errorf("raft log snapshot %d: %w", index, ErrClosed))
		return
	}
	l.queue <- request{snapshot: &snapshotRequest{index: index, confState: cs, data: data, keep: keep}}
	l.mu.Unlock()
}

// reportSnapshot logs a failure and calls OnSnapshot if set.
func (l *Log) reportSnapshot(index uint64, err error) {
	if err != nil {
		l.log.Error().Err(err).Uint64("index", index).Msg("snapshot not stored")
	}
	if l.opts.OnSnapshot != nil {
		l.opts.OnSnapshot(index, err)
	}
}

// Close stops accepting requests, commits everything already queued
// (reporting it as usual), waits for the committer and closes Pebble,
// unless a commit left Pebble wedged (pebbledb.ErrWedged; Close would
// block forever): then Pebble stays open until the process exits and
// Close says so. Calling it again returns the first call's result.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.queue)
		l.mu.Unlock()

		l.done.Wait()
		if errors.Is(l.failed, pebbledb.ErrWedged) {
			// Pebble holds its commit lock: Close would never return.
			l.closeErr = fmt.Errorf("close raft log %s: left open, Pebble's commit pipeline is wedged (restart the process): %w", l.dir, l.failed)
			return
		}
		l.readMu.Lock()
		l.dbClosed = true
		l.readMu.Unlock()
		if err := l.db.Close(); err != nil {
			l.closeErr = fmt.Errorf("close raft log %s: %w", l.dir, err)
		}
		l.log.Debug().Err(l.closeErr).Msg("raft log closed")
	})
	return l.closeErr
}

// noteDamage is pebbledb.Options.OnBackgroundCorruption: a compaction or
// flush read damaged data. Pebble calls it with its mutex held, so it only
// records the first report; the committer fails every later request with
// it, so that the consensus actor learns of it through its next Write.
func (l *Log) noteDamage(err error) {
	err = fmt.Errorf("raft log %s: %w: background job: %w", l.dir, ErrCorrupt, pebbledb.Readable(err))
	l.damage.CompareAndSwap(nil, &err)
}
