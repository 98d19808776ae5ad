package storage

import (
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tolerex/tolerex/storage/diskspace"
)

// fakeDisk is a diskspace.StatFunc whose free space the test sets.
type fakeDisk struct{ free atomic.Uint64 }

func (d *fakeDisk) stat(string) (diskspace.Usage, error) {
	return diskspace.Usage{Free: d.free.Load(), Total: 1 << 30}, nil
}

// TestFullDiskRefusesPutsNotDeletes puts with the free space under the
// watermark: the puts fail with ErrDiskFull and are not stored, deletes
// are committed, and puts are stored again once free space is back above
// the resume mark.
func TestFullDiskRefusesPutsNotDeletes(t *testing.T) {
	disk := &fakeDisk{}
	disk.free.Store(100 << 20)
	guard := diskspace.NewGuard(t.TempDir(), diskspace.NewWatermark(8<<20), disk.stat, nil)
	ts := openTestStore(t, t.TempDir(), Options{Sync: true, Space: guard})
	ts.mustPut(t, 1, 1, []byte("before"))

	disk.free.Store(4 << 20)
	err := waitResult(ts.submit(Op{Kind: OpPut, ID: 2, Version: 1, Payload: []byte("refused")}))
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "disk full: 4194304 bytes free, below the 8388608-byte watermark") {
		t.Fatalf("put on a full disk: %v; want ErrDiskFull with the free space and the watermark", err)
	}
	if _, err := ts.Get(2, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused put is readable: %v", err)
	}
	ts.mustDelete(t, 1, 1, len("before"))
	if st := ts.Stats(); st.Messages != 0 || st.Bytes != 0 {
		t.Errorf("stats after the delete = %+v", st)
	}

	// Above the watermark but under the resume mark (10 MiB): still refused.
	disk.free.Store(9 << 20)
	if err := waitResult(ts.submit(Op{Kind: OpPut, ID: 3, Version: 1, Payload: []byte("x")})); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("put between the watermark and the resume mark: %v; want ErrDiskFull", err)
	}
	disk.free.Store(10 << 20)
	ts.mustPut(t, 4, 1, []byte("after"))
	if got, err := ts.Get(4, 1); err != nil || string(got) != "after" {
		t.Fatalf("get after space came back: %q %v", got, err)
	}
}

// enospcFS fails every write to a write-ahead log with ENOSPC while full
// is set.
func enospcFS(full *atomic.Bool) vfs.FS {
	return errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if full.Load() && op.Kind == errorfs.OpFileWrite && strings.HasSuffix(op.Path, ".log") {
			return syscall.ENOSPC
		}
		return nil
	}))
}

// TestWALWriteFailureClosesStore fills the disk under the store's feet
// (the write-ahead log's writes fail with ENOSPC, past any watermark).
// Pebble gives up with Fatalf; the store reports the failed ops, closes
// itself and reports it, and a read-only reopen serves every put
// acknowledged before.
func TestWALWriteFailureClosesStore(t *testing.T) {
	dir := t.TempDir()
	var full atomic.Bool
	failed := make(chan error, 2)
	ts := &testStore{}
	s, err := Open(dir, Options{Sync: true, OnCommit: ts.onCommit, fs: enospcFS(&full),
		OnWriteFailure: func(err error) { failed <- err }})
	if err != nil {
		t.Fatal(err)
	}
	ts.Store = s
	for id := range int64(50) {
		ts.mustPut(t, id, 1, []byte("acknowledged"))
	}

	full.Store(true)
	err = waitResult(ts.submit(Op{Kind: OpPut, ID: 100, Version: 1, Payload: []byte("lost")}))
	if !errors.Is(err, ErrWriteFailed) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("put when the WAL write fails: %v; want ErrWriteFailed wrapping ENOSPC", err)
	}
	select {
	case err := <-failed:
		if !errors.Is(err, ErrWriteFailed) {
			t.Errorf("OnWriteFailure got %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("OnWriteFailure not called")
	}
	if err := waitResult(ts.submit(Op{Kind: OpPut, ID: 101, Version: 1, Payload: []byte("x")})); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrWriteFailed) {
		t.Errorf("put after the failure: %v; want ErrClosed and ErrWriteFailed", err)
	}
	if _, err := s.Get(1, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("get after the store closed itself: %v", err)
	}
	_ = s.Close() // returns the first close's result; must not hang

	ro := openTestStore(t, dir, Options{ReadOnly: true, fs: enospcFS(&full)})
	if !ro.ReadOnly() {
		t.Fatal("store opened with ReadOnly does not say so")
	}
	if st := ro.Stats(); st.Messages != 50 {
		t.Errorf("read-only store counts %d messages, want 50", st.Messages)
	}
	for id := range int64(50) {
		if got, err := ro.Get(id, 1); err != nil || string(got) != "acknowledged" {
			t.Fatalf("read-only get %d: %q %v", id, got, err)
		}
	}
	if err := waitResult(ro.submit(Op{Kind: OpPut, ID: 200, Version: 1, Payload: []byte("x")})); !errors.Is(err, ErrReadOnly) {
		t.Errorf("put to a read-only store: %v; want ErrReadOnly", err)
	}
}

func TestReadOnlyOpenOfMissingStore(t *testing.T) {
	_, err := Open(t.TempDir(), Options{ReadOnly: true, OnCommit: func([]Result) {}})
	if !errors.Is(err, ErrNoStore) || errors.Is(err, ErrCorruptStore) {
		t.Fatalf("read-only open of an empty dir: %v; want ErrNoStore", err)
	}
}
