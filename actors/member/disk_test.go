package member

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/messages"
	"github.com/tolerex/tolerex/storage/diskspace"
)

// fakeDisk is the member's filesystem as the test says it is.
type fakeDisk struct{ free atomic.Uint64 }

func (d *fakeDisk) stat(string) (diskspace.Usage, error) {
	return diskspace.Usage{Free: d.free.Load(), Total: 1 << 30}, nil
}

// syncBuffer is a log destination the test reads while actors write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

const testMinFree = 64 << 20 // resume at 80 MiB

// onFakeDisk runs the member's storage on disk, with a 64 MiB watermark,
// checks every 10ms and its log also in logs.
func onFakeDisk(t *testing.T, disk *fakeDisk, logs io.Writer) func(*Config) {
	return func(cfg *Config) {
		cfg.Storage.MinFreeBytes = testMinFree
		cfg.Storage.SpaceCheckInterval = 10 * time.Millisecond
		cfg.Storage.Statfs = disk.stat
		cfg.Logger = zerolog.New(zerolog.MultiLevelWriter(zerolog.NewTestWriter(t), logs)).Level(zerolog.InfoLevel)
	}
}

// TestFullDiskRefusesWritesAndServesReads lowers the free space under the
// watermark of a running member: stores are refused with "disk full",
// stored messages are still read, the status, readiness, heartbeat
// figures and metrics say so, the log says so once; freed space brings
// writes back, said once too.
func TestFullDiskRefusesWritesAndServesReads(t *testing.T) {
	disk := &fakeDisk{}
	disk.free.Store(1 << 30)
	logs := &syncBuffer{}
	m := startMember(t, t.TempDir(), quickRestarts(), onFakeDisk(t, disk, logs))
	eventually(t, "the store to open", m.status.StorageReady.Load)
	for id := range int64(10) {
		if msg := m.store(t, id, 1, payload(id)); msg != "" {
			t.Fatalf("store %d: %s", id, msg)
		}
	}

	disk.free.Store(10 << 20)
	eventually(t, "writes to be refused", func() bool { return m.status.WritesRefused() != "" })
	const want = "disk full: 10485760 bytes free, below the 67108864-byte watermark"
	if got := m.status.WritesRefused(); got != want {
		t.Fatalf("WritesRefused() = %q, want %q", got, want)
	}
	if msg := m.store(t, 100, 1, payload(100)); msg != want {
		t.Fatalf("store on a full disk answered %q, want %q", msg, want)
	}
	for id := range int64(10) {
		if r := m.read(t, id, 1); r.GetStatus() != messages.ReadStatus_READ_OK || !bytes.Equal(r.GetPayload(), payload(id)) {
			t.Fatalf("read %d on a full disk: %s %s", id, r.GetStatus(), r.GetError())
		}
	}
	if r := m.read(t, 100, 1); r.GetStatus() != messages.ReadStatus_READ_MISSING {
		t.Fatalf("the refused store is readable: %s", r.GetStatus())
	}
	if err := m.status.NotReady(); err == nil || err.Error() != want+"; refusing writes, serving reads" {
		t.Errorf("NotReady() = %v", err)
	}
	for name, v := range map[string]float64{
		"tolerex_member_writes_refused":      1,
		"tolerex_member_disk_free_bytes":     10 << 20,
		"tolerex_member_disk_total_bytes":    1 << 30,
		"tolerex_member_disk_min_free_bytes": testMinFree,
		"tolerex_member_storage_ready":       1,
	} {
		if got := m.metric(t, name); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}

	// Above the watermark but under the resume mark: still refused.
	disk.free.Store(70 << 20)
	eventually(t, "a check to see 70 MiB free", func() bool { return m.status.DiskFree() == 70<<20 })
	if msg := m.store(t, 101, 1, payload(101)); !strings.HasPrefix(msg, "disk full: 73400320 bytes free, not yet back to 83886080") {
		t.Fatalf("store between the marks answered %q", msg)
	}
	disk.free.Store(100 << 20)
	eventually(t, "writes to be taken again", func() bool { return m.status.WritesRefused() == "" })
	if msg := m.store(t, 102, 1, payload(102)); msg != "" {
		t.Fatalf("store after space was freed: %s", msg)
	}
	if err := m.status.NotReady(); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Errorf("NotReady() after space was freed = %v; want only the missing registration", err)
	}
	if n := logs.count("disk full: refusing writes"); n != 1 {
		t.Errorf("the log says disk full %d times, want once", n)
	}
	if n := logs.count("disk has room again: taking writes"); n != 1 {
		t.Errorf("the log says writes are taken again %d times, want once", n)
	}
}

// TestFullDiskAtStartOpensReadOnly starts a member whose disk is already
// under the watermark: it opens its store read-only, serves what it holds,
// refuses stores, and reopens the store read-write once space is freed.
func TestFullDiskAtStartOpensReadOnly(t *testing.T) {
	dir := t.TempDir()
	writeStore(t, dir, 100)
	disk := &fakeDisk{}
	disk.free.Store(1 << 20)
	logs := &syncBuffer{}
	m := startMember(t, dir, quickRestarts(), onFakeDisk(t, disk, logs))
	eventually(t, "the store to open", m.status.StorageReady.Load)
	if !m.status.ReadOnly.Load() || m.metric(t, "tolerex_member_storage_read_only") != 1 {
		t.Fatal("store on a full disk not opened read-only")
	}
	for id := range int64(100) {
		if r := m.read(t, id, 1); r.GetStatus() != messages.ReadStatus_READ_OK || !bytes.Equal(r.GetPayload(), payload(id)) {
			t.Fatalf("read %d from the read-only store: %s %s", id, r.GetStatus(), r.GetError())
		}
	}
	if msg := m.store(t, 200, 1, payload(200)); !strings.HasPrefix(msg, "disk full: ") {
		t.Fatalf("store into the read-only store answered %q", msg)
	}
	if m.status.Messages.Load() != 100 {
		t.Errorf("read-only store counts %d messages, want 100", m.status.Messages.Load())
	}

	disk.free.Store(1 << 30)
	eventually(t, "the store to be reopened read-write", func() bool {
		return !m.status.ReadOnly.Load() && m.status.StorageReady.Load()
	})
	if msg := m.store(t, 200, 1, payload(200)); msg != "" {
		t.Fatalf("store after the reopen: %s", msg)
	}
	if r := m.read(t, 5, 1); r.GetStatus() != messages.ReadStatus_READ_OK {
		t.Fatalf("read after the reopen: %s", r.GetStatus())
	}
	if restarts, live := m.registry.Restarts(messages.StorageActor); !live || restarts != 0 {
		t.Errorf("storage actor live=%v restarts=%d; want no restart", live, restarts)
	}
}

// TestFullDiskAtFirstStartCreatesNothing starts a new member (no store
// yet) on a full disk: it creates nothing, says why it is not ready, and
// creates its store once space is freed.
func TestFullDiskAtFirstStartCreatesNothing(t *testing.T) {
	disk := &fakeDisk{}
	disk.free.Store(1 << 20)
	m := startMember(t, t.TempDir(), quickRestarts(), onFakeDisk(t, disk, io.Discard))
	eventually(t, "the member to say its disk is full", func() bool {
		err := m.status.NotReady()
		return err != nil && strings.HasSuffix(err.Error(), "no store open, nothing served")
	})
	if m.status.StorageReady.Load() {
		t.Fatal("storage ready without a store")
	}
	if msg := m.store(t, 1, 1, payload(1)); !strings.HasPrefix(msg, "disk full: ") {
		t.Fatalf("store without a store on a full disk answered %q", msg)
	}
	disk.free.Store(1 << 30)
	eventually(t, "the store to be created", m.status.StorageReady.Load)
	if msg := m.store(t, 1, 1, payload(1)); msg != "" {
		t.Fatalf("store after space was freed: %s", msg)
	}
}
