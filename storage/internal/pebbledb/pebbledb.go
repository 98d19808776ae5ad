// Package pebbledb opens Pebble databases the way every Tolerex store
// wants them: in a created directory, with a bounded block cache and
// memtable, and with Pebble's log output routed into zerolog so it never
// writes to stderr on its own.
package pebbledb

import (
	"fmt"
	"os"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"
)

// Options configure Open.
type Options struct {
	CacheBytes    int64
	MemTableBytes uint64
	Logger        zerolog.Logger
}

// Open creates dir if needed and opens the database in it.
func Open(dir string, opts Options) (*pebble.DB, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cache := pebble.NewCache(opts.CacheBytes)
	// The DB takes its own reference to the cache.
	defer cache.Unref()
	return pebble.Open(dir, &pebble.Options{
		Cache:        cache,
		MemTableSize: opts.MemTableBytes,
		Logger:       logger{log: opts.Logger.With().Str("subsystem", "pebble").Logger()},
	})
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

// Fatalf logs at fatal level and then panics. Pebble calls it only for
// invariant violations it cannot continue from and does not expect it to
// return; a panic keeps the stack trace, unlike an exit.
func (l logger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.WithLevel(zerolog.FatalLevel).Msg(msg)
	panic("pebble: " + msg)
}

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
