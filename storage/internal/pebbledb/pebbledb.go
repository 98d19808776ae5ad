// Package pebbledb opens Pebble databases the way every Tolerex store
// wants them: in a created directory, with a bounded block cache and
// memtable, with Pebble's log output routed into zerolog so it never
// writes to stderr on its own, with its background errors logged at a
// bounded rate, with on-disk corruption reported as an error instead of
// through Pebble's default handler, which calls Fatalf, and with the Fatalf
// Pebble raises for a failed commit turned into an error by Commit.
package pebbledb

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
)

// Options configure Open.
type Options struct {
	CacheBytes    int64
	MemTableBytes uint64
	Logger        zerolog.Logger
	// OnBackgroundCorruption, if set, is called for every error of a
	// background job (a compaction, loading table statistics) that IsDamage
	// classifies as damage. Pebble calls it with its own mutex held and,
	// for a failed L0 compaction, retries at once without backoff, so it
	// must return quickly and must not call into the DB.
	OnBackgroundCorruption func(error)
	// DisableTableStats turns off Pebble's background loading of table
	// statistics. The loader retries a table whose metadata blocks are
	// corrupt in a tight loop (a busy CPU core for as long as the database
	// is open); the statistics only help compactions prioritise deletion
	// tombstones.
	DisableTableStats bool
	// FormatMajorVersion is the on-disk format to create a database with,
	// or to upgrade an older one to (one way); zero means DefaultFormat.
	FormatMajorVersion pebble.FormatMajorVersion
	// ReadOnly opens an existing database without writing a byte: Pebble
	// replays the write-ahead log into memory and neither flushes nor
	// compacts, so it opens on a full disk. A missing database yields an
	// error wrapping ErrNoDatabase.
	ReadOnly bool
	// FS is the filesystem the database lives on; nil means the operating
	// system's. Tests inject faults through it.
	FS vfs.FS
}

// ErrNoDatabase reports that a read-only Open found no database to open.
var ErrNoDatabase = errors.New("no database")

// BackgroundErrorInterval is the least time between two "background error"
// log lines of one database. Pebble retries a failed flush or compaction
// at once, without backoff (on a full disk about 100 times a second), so
// every error is not logged: the first one is, then one every interval,
// with the count of those left out.
const BackgroundErrorInterval = 10 * time.Second

// DefaultFormat is the Pebble on-disk format Tolerex stores use: the first
// with WAL sync chunks, which let Pebble tell damage in the middle of the
// write-ahead log from a torn tail (with older formats it silently drops
// every record from the damage on, acknowledged writes included), and with
// checksummed sstable footers. Older stores are upgraded when opened.
const DefaultFormat = pebble.FormatTableFormatV6

// consistencyMismatch is the text of the error Pebble's Open returns when
// an sstable's size on disk differs from the size the MANIFEST records
// (for example a truncated file). Pebble does not mark that error as
// corruption, so IsDamage matches it; a test in the storage package pins
// the behaviour so a Pebble upgrade that changes it is noticed.
const consistencyMismatch = "object size mismatch"

// IsDamage reports whether err, returned by Open or a read, says that the
// database's files are damaged (a checksum mismatch, a bad magic number, a
// malformed MANIFEST or WAL, a truncated or missing sstable) rather than
// unusable for another reason (a held lock, permissions, a full disk).
func IsDamage(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrNoDatabase) {
		return false
	}
	return pebble.IsCorruptionError(err) ||
		errors.Is(err, os.ErrNotExist) ||
		strings.Contains(err.Error(), consistencyMismatch)
}

// corruptionCarrier is the message of the value Pebble joins (errors.Join,
// so after a newline) to a corruption error to carry its details to the
// event listener.
const corruptionCarrier = "\n<corruption detail carrier>"

// Readable returns err with a message that leaves out the detail carrier
// Pebble joins to corruption errors, so it reads well in a log line or an
// HTTP response; errors.Is and errors.As see err unchanged.
func Readable(err error) error {
	if err == nil || !strings.Contains(err.Error(), corruptionCarrier) {
		return err
	}
	return readableError{err: err}
}

type readableError struct{ err error }

func (e readableError) Error() string {
	return strings.ReplaceAll(e.err.Error(), corruptionCarrier, "")
}

func (e readableError) Unwrap() error { return e.err }

// Open creates dir if needed and opens the database in it; with
// Options.ReadOnly it creates nothing.
func Open(dir string, opts Options) (*pebble.DB, error) {
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	if opts.ReadOnly {
		if _, err := fs.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open %s read-only: %w", dir, ErrNoDatabase)
		}
	} else if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cache := pebble.NewCache(opts.CacheBytes)
	// The DB takes its own reference to the cache.
	defer cache.Unref()
	log := opts.Logger.With().Str("subsystem", "pebble").Logger()
	if opts.FormatMajorVersion == 0 {
		opts.FormatMajorVersion = DefaultFormat
	}
	db, err := pebble.Open(dir, &pebble.Options{
		FS:                 fs,
		Cache:              cache,
		MemTableSize:       opts.MemTableBytes,
		Logger:             logger{log: log},
		DisableTableStats:  opts.DisableTableStats,
		FormatMajorVersion: opts.FormatMajorVersion,
		ReadOnly:           opts.ReadOnly,
		EventListener:      eventListener(log, opts.OnBackgroundCorruption),
	})
	if errors.Is(err, pebble.ErrDBDoesNotExist) {
		return nil, fmt.Errorf("open %s read-only: %w", dir, ErrNoDatabase)
	}
	return db, err
}

// eventListener replaces the two Pebble event handlers whose defaults do
// not suit a store that must survive damaged files and full disks:
// DataCorruption, whose default calls Logger.Fatalf on every corrupt block
// read, and BackgroundError, which is logged at a bounded rate (see
// BackgroundErrorInterval) and reports damage found by background jobs to
// onCorruption. The other events keep Pebble's defaults.
func eventListener(log zerolog.Logger, onCorruption func(error)) *pebble.EventListener {
	limit := &logLimiter{interval: BackgroundErrorInterval}
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			err = Readable(err)
			if ok, left := limit.allow(time.Now()); ok {
				ev := log.Error().Err(err)
				if left > 0 {
					ev = ev.Int("not_logged_since_last", left)
				}
				ev.Msg("background error")
			}
			if onCorruption != nil && IsDamage(err) {
				onCorruption(err)
			}
		},
		// The same error is returned to the reader (or reaches
		// BackgroundError), which reports it; this is only a trace.
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			log.Debug().Str("path", info.Path).Err(Readable(info.Details)).Msg("corrupt data read")
		},
	}
}

// logLimiter lets one log line through per interval and counts the lines
// it holds back.
type logLimiter struct {
	interval time.Duration

	mu      sync.Mutex
	next    time.Time // the earliest time the next line may be logged
	skipped int
}

// allow reports whether a line may be logged at now and, if so, how many
// were held back since the last one logged.
func (l *logLimiter) allow(now time.Time) (ok bool, skipped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.skipped++
		return false, 0
	}
	skipped, l.skipped = l.skipped, 0
	l.next = now.Add(l.interval)
	return true, skipped
}

// Errors Commit wraps when Pebble gave up on a commit.
var (
	// ErrFatal is wrapped by the error Commit returns when Pebble called
	// Logger.Fatalf or panicked while committing: the database must not be
	// written again (reads still work).
	ErrFatal = errors.New("pebble gave up")
	// ErrWedged is wrapped, with ErrFatal, when Pebble panicked in the
	// middle of its commit pipeline, holding its commit lock: DB.Close
	// would then block forever, so the database must be left open (reads
	// still work) until the process exits.
	ErrWedged = errors.New("pebble's commit pipeline is wedged")
)

// fatalCommit starts the message of the Fatalf Pebble raises after its
// commit pipeline returned an error (db.go:885 in v2.1.7), when it holds
// no lock.
const fatalCommit = "pebble: fatal commit error"

// Commit commits b. When Pebble's commit fails it calls Logger.Fatalf
// ("pebble: fatal commit error", db.go:885 in v2.1.7; for example a
// write-ahead-log write or sync that hit a full disk) and would report
// success if Fatalf returned; the logger panics there instead, and Commit
// turns that panic into an error wrapping ErrFatal and the errors Pebble
// passed to Fatalf (so errors.Is finds syscall.ENOSPC). Pebble holds no
// lock there, so the database can still be read and closed. Any other
// panic on the way (Pebble panics outright when a write-ahead-log write
// fails after an earlier unsynced one did, db.go:997, with its commit
// lock held) yields an error wrapping ErrFatal and ErrWedged.
func Commit(b *pebble.Batch, opts *pebble.WriteOptions) error {
	return recoverCommit(func() error { return b.Commit(opts) })
}

// recoverCommit runs commit and turns a panic in it into an error, as
// Commit documents.
func recoverCommit(commit func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			var fe *FatalError
			if e, ok := p.(error); ok && errors.As(e, &fe) && strings.HasPrefix(fe.Msg, fatalCommit) {
				err = fmt.Errorf("%w: %w", ErrFatal, fe)
				return
			}
			if e, ok := p.(error); ok {
				err = fmt.Errorf("%w: %w: panic: %w", ErrFatal, ErrWedged, e)
				return
			}
			err = fmt.Errorf("%w: %w: panic: %v", ErrFatal, ErrWedged, p)
		}
	}()
	return commit()
}

// WriteOptions are the commit options for a sync mode: Sync fsyncs the
// write-ahead log before a commit returns; NoSync may leave it in Pebble's
// buffer, so even a process crash can lose the write.
func WriteOptions(sync bool) *pebble.WriteOptions {
	if sync {
		return pebble.Sync
	}
	return pebble.NoSync
}

// logger routes Pebble's log output into zerolog. It implements
// pebble.Logger.
type logger struct {
	log zerolog.Logger
}

// Infof logs Pebble's informational messages (flushes, compactions, WAL
// recycling) at debug level: they are routine.
func (l logger) Infof(format string, args ...any) {
	l.log.Debug().Msgf(format, args...)
}

// Errorf logs Pebble's errors at error level.
func (l logger) Errorf(format string, args ...any) {
	l.log.Error().Msgf(format, args...)
}

// Fatalf logs at fatal level and then panics with a *FatalError. With the
// event listener Open installs, Pebble calls it only for failures it
// cannot continue from (a failed commit, a failed MANIFEST write, broken
// invariants) and does not expect it to return; a panic keeps the stack
// trace, unlike an exit, and Commit recovers the one raised on the
// committing goroutine.
func (l logger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.WithLevel(zerolog.FatalLevel).Msg(msg)
	var errs []error
	for _, a := range args {
		if err, ok := a.(error); ok {
			errs = append(errs, err)
		}
	}
	panic(&FatalError{Msg: msg, Errs: errs})
}

// FatalError is the value Pebble's Fatalf panics with: its message and
// the errors among its arguments.
type FatalError struct {
	Msg  string
	Errs []error
}

// Error is Pebble's message, marked as Pebble's.
func (e *FatalError) Error() string { return "pebble: " + e.Msg }

// Unwrap returns the errors Pebble passed to Fatalf.
func (e *FatalError) Unwrap() []error { return e.Errs }

// GroupCommit runs a group committer until queue is closed: it takes the
// first queued item (waiting for one), then everything else already queued
// without waiting, up to maxItems items and maxBytes bytes by size, and
// hands the batch to commit. One commit (one fsync) thus serves every item
// that arrived while the previous one ran. An item that does not fit is
// carried into the next batch; a single item larger than maxBytes forms a
// batch of its own. commit must not keep the slice.
func GroupCommit[T any](queue <-chan T, maxItems, maxBytes int, size func(T) int, commit func([]T)) {
	var (
		carry    T
		hasCarry bool
		batch    = make([]T, 0, maxItems)
	)
	for {
		batch = batch[:0]
		if hasCarry {
			batch = append(batch, carry)
			hasCarry = false
		} else {
			item, ok := <-queue
			if !ok {
				return
			}
			batch = append(batch, item)
		}
		total := size(batch[0])
	drain:
		for len(batch) < maxItems {
			select {
			case item, ok := <-queue:
				if !ok {
					break drain
				}
				if total+size(item) > maxBytes {
					carry, hasCarry = item, true
					break drain
				}
				batch = append(batch, item)
				total += size(item)
			default:
				break drain
			}
		}
		commit(batch)
	}
}

// MemoryBytes is what db holds in memory for its memtables (the active
// one, those waiting to be flushed and one kept for reuse) and its block
// cache. Pebble allocates these itself; in a build without cgo (the
// release binary is one) they come from the Go heap, so the process's
// heap figures include them. Memtables start at 256 KiB and double up to
// Options.MemTableBytes, so the figure grows for a while after Open.
func MemoryBytes(db *pebble.DB) uint64 {
	m := db.Metrics()
	return m.MemTable.Size + m.MemTable.ZombieSize + uint64(max(0, m.BlockCache.Size))
}
