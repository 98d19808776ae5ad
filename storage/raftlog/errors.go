package raftlog

import "errors"

// Errors reported by the store. Returned and reported errors wrap them; test
// with errors.Is.
var (
	// ErrCorrupt reports stored data that failed verification.
	ErrCorrupt = errors.New("raftlog: corrupt data")
	// ErrClosed reports a request made after Close began.
	ErrClosed = errors.New("raftlog: closed")
	// ErrFailed reports a request refused because an earlier commit failed;
	// the store must be closed and opened again.
	ErrFailed = errors.New("raftlog: an earlier commit failed")
	// ErrInvalid reports a Write that does not fit the log (entries that
	// are not consecutive or leave a gap, a snapshot older than the stored
	// one, a hard state whose commit index lies outside the log); nothing
	// of it is stored.
	ErrInvalid = errors.New("raftlog: invalid write")
	// ErrBadSnapshot reports a CreateSnapshot at an index that is not
	// stored, not committed, or not above the stored snapshot.
	ErrBadSnapshot = errors.New("raftlog: bad snapshot index")
	// ErrSnapshotGone reports a SnapshotData for a snapshot that is no
	// longer the stored one: a newer snapshot replaced it.
	ErrSnapshotGone = errors.New("raftlog: snapshot replaced by a newer one")
)
