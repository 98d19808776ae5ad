// Package diskspace decides, from the free space statfs reports for a
// directory's filesystem, whether a store must stop taking writes because
// its disk is nearly full: a low watermark with hysteresis, checked on
// demand and cheap enough (one statfs system call) to check before every
// group commit.
package diskspace

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// ErrFull is wrapped by the error a store returns for a write it refuses
// because its disk is nearly full.
var ErrFull = errors.New("disk full")

// Usage is the space of one filesystem, in bytes.
type Usage struct {
	// Free is the space an unprivileged process may still use (statfs's
	// f_bavail): the space reserved for root is not counted.
	Free uint64
	// Total is the filesystem's size.
	Total uint64
}

// StatFunc reports the usage of the filesystem holding dir. Statfs is the
// real one; tests inject others.
type StatFunc func(dir string) (Usage, error)

// Statfs reports the usage of the filesystem that holds dir, or that would
// hold it: if dir does not exist yet, its nearest existing ancestor is
// asked.
func Statfs(dir string) (Usage, error) {
	path := filepath.Clean(dir)
	for {
		u, err := statfs(path)
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			if err != nil {
				return Usage{}, fmt.Errorf("statfs %s: %w", path, err)
			}
			return u, nil
		}
		parent := filepath.Dir(path)
		if parent == path {
			return Usage{}, fmt.Errorf("statfs %s: %w", dir, err)
		}
		path = parent
	}
}

// Watermark is when a store refuses writes: below MinFree free bytes it
// refuses; once refusing, it accepts again only at ResumeFree or more, so
// that a disk hovering around MinFree does not flap between the two.
type Watermark struct {
	MinFree    uint64
	ResumeFree uint64
}

// NewWatermark returns the watermark for minFree: writes resume at minFree
// plus a quarter (for the default 256 MiB, at 320 MiB). A zero minFree
// never refuses.
func NewWatermark(minFree uint64) Watermark {
	return Watermark{MinFree: minFree, ResumeFree: minFree + minFree/4}
}

// Refuse says whether writes are refused with free bytes free, given
// whether they were refused until now.
func (w Watermark) Refuse(refusing bool, free uint64) bool {
	if w.MinFree == 0 {
		return false
	}
	if refusing {
		return free < w.ResumeFree
	}
	return free < w.MinFree
}

// State is a Guard's view after its last check.
type State struct {
	Usage
	// Refusing is true while writes are refused.
	Refusing bool
	// Checked is false until the first successful statfs.
	Checked bool
	// Err is the error of the last statfs, if it failed; Usage and
	// Refusing are then those of the last successful one.
	Err error
}

// Guard checks a directory's free space against a watermark and keeps the
// decision. Its methods are safe for concurrent use.
type Guard struct {
	dir     string
	mark    Watermark
	stat    StatFunc
	onCheck func(st State, changed bool)

	mu    sync.Mutex
	state State
}

// NewGuard returns a guard of dir's filesystem. stat nil means Statfs.
// onCheck, if set, is called after every check with the new state and
// whether Refusing changed; it is called with the guard's lock held, so
// transitions are reported in order, and must not call the guard.
func NewGuard(dir string, mark Watermark, stat StatFunc, onCheck func(st State, changed bool)) *Guard {
	if stat == nil {
		stat = Statfs
	}
	return &Guard{dir: dir, mark: mark, stat: stat, onCheck: onCheck}
}

// Watermark is the guard's watermark.
func (g *Guard) Watermark() Watermark { return g.mark }

// Check asks statfs now and returns the new state. A failed statfs keeps
// the previous decision and records the error.
func (g *Guard) Check() State {
	u, err := g.stat(g.dir)
	g.mu.Lock()
	defer g.mu.Unlock()
	was := g.state.Refusing
	if err != nil {
		g.state.Err = err
	} else {
		g.state = State{Usage: u, Refusing: g.mark.Refuse(was, u.Free), Checked: true}
	}
	if g.onCheck != nil {
		g.onCheck(g.state, g.state.Refusing != was)
	}
	return g.state
}

// State returns the state of the last check, without checking.
func (g *Guard) State() State {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state
}

// Err returns the error a refused write reports: it wraps ErrFull and
// says how much is free and what the watermark is. It is nil while
// writes are accepted.
func (g *Guard) Err() error {
	st := g.State()
	if !st.Refusing {
		return nil
	}
	return g.mark.FullError(st.Free)
}

// FullError is the error for a refused write with free bytes free:
// "disk full: 1048576 bytes free, below the 268435456-byte watermark", or,
// while free space is back above the watermark but not yet at ResumeFree,
// "disk full: 300000000 bytes free, not yet back to 335544320 (the
// 268435456-byte watermark plus a margin)".
func (w Watermark) FullError(free uint64) error {
	if free < w.MinFree {
		return fmt.Errorf("%w: %d bytes free, below the %d-byte watermark", ErrFull, free, w.MinFree)
	}
	return fmt.Errorf("%w: %d bytes free, not yet back to %d (the %d-byte watermark plus a margin)", ErrFull, free, w.ResumeFree, w.MinFree)
}
