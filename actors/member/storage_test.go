package member

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/actors/actortest"
	"github.com/tolerex/tolerex/actors/tree"
	"github.com/tolerex/tolerex/cluster/local/poll"
	"github.com/tolerex/tolerex/messages"
	"github.com/tolerex/tolerex/storage"
)

// memberNode is a member supervisor, with its storage actor, running in a
// real actor system. Its gateway address leads nowhere: heartbeats go to
// dead letters and the member never registers, which these tests do not
// need.
type memberNode struct {
	system   *actor.ActorSystem
	status   *Status
	registry *tree.Registry
	metrics  *prometheus.Registry
}

// startMember starts a member on store dir; configure, if given, changes
// its configuration first.
func startMember(t *testing.T, dir string, restart RestartPolicy, configure ...func(*Config)) *memberNode {
	t.Helper()
	return startMemberIn(t, actor.NewActorSystem(actor.WithLoggerFactory(actortest.QuietLogger)), dir, restart, configure...)
}

// startMemberIn is startMember in the given actor system, which it shuts
// down at the end of the test.
func startMemberIn(t *testing.T, system *actor.ActorSystem, dir string, restart RestartPolicy, configure ...func(*Config)) *memberNode {
	t.Helper()
	n := &memberNode{system: system, status: &Status{}, registry: tree.NewRegistry(nil), metrics: prometheus.NewRegistry()}
	cfg := Config{
		MemberID:          "m-test",
		Gateways:          []string{"127.0.0.1:1"},
		HeartbeatInterval: time.Hour,
		Restart:           restart,
		Storage:           StorageConfig{Dir: dir, Sync: true, Metrics: NewStorageMetrics(n.metrics, n.status)},
		Tree:              n.registry,
		Status:            n.status,
		Logger:            zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	}
	for _, c := range configure {
		c(&cfg)
	}
	pid, err := system.Root.SpawnNamed(n.registry.Props("member", NewSupervisor(cfg)), messages.MemberActor)
	if err != nil {
		t.Fatalf("spawn member: %v", err)
	}
	t.Cleanup(func() {
		if err := system.Root.StopFuture(pid).Wait(); err != nil {
			t.Errorf("stop member: %v", err)
		}
		system.Shutdown()
	})
	return n
}

func (n *memberNode) storage() *actor.PID { return n.system.NewLocalPID(messages.StorageActor) }

func (n *memberNode) read(t *testing.T, id int64, version uint64) *messages.ReadReply {
	t.Helper()
	res, err := n.system.Root.RequestFuture(n.storage(), &messages.ReadBatch{Requests: []*messages.ReadRequest{{Id: id, Version: version}}}, 10*time.Second).Result()
	if err != nil {
		t.Fatalf("read %d/%d: %v", id, version, err)
	}
	return res.(*messages.ReadReplyBatch).GetReplies()[0]
}

func (n *memberNode) store(t *testing.T, id int64, version uint64, payload []byte) string {
	t.Helper()
	res, err := n.system.Root.RequestFuture(n.storage(), &messages.StoreBatch{Requests: []*messages.StoreRequest{{Id: id, Version: version, Payload: payload}}}, 10*time.Second).Result()
	if err != nil {
		t.Fatalf("store %d/%d: %v", id, version, err)
	}
	return res.(*messages.StoreAckBatch).GetAcks()[0].GetError()
}

// metric returns the value of the named counter or gauge.
func (n *memberNode) metric(t *testing.T, name string) float64 {
	t.Helper()
	families, err := n.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		m := f.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// eventually waits up to 20 s for cond to hold.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Eventually(t, 20*time.Second, 10*time.Millisecond, what, func() (bool, string) {
		return cond(), "still false"
	})
}

func quickRestarts() RestartPolicy {
	return RestartPolicy{MaxRestarts: 2, Window: time.Minute, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
}

func payload(id int64) []byte {
	return fmt.Appendf(nil, "message %d %x", id, uint64(id)*0x9e3779b97f4a7c15)
}

// writeStore fills dir with ids [0, n) at version 1 through a real store
// and closes it, which leaves them in one sstable.
func writeStore(t *testing.T, dir string, n int) {
	t.Helper()
	results := make(chan storage.Result, n)
	s, err := storage.Open(dir, storage.Options{Sync: true, OnCommit: func(rs []storage.Result) {
		for _, r := range rs {
			results <- r
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	for id := range int64(n) {
		s.Submit(storage.Op{Kind: storage.OpPut, ID: id, Version: 1, Payload: payload(id)})
	}
	for range n {
		if r := <-results; r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// largestSSTable returns the path and size of dir's largest sstable.
func largestSSTable(t *testing.T, dir string) (string, int64) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no sstable in %s: %v", dir, err)
	}
	var best string
	var size int64
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > size {
			best, size = p, st.Size()
		}
	}
	return best, size
}

// flipMiddle inverts 16 bytes in the middle of dir's largest sstable.
func flipMiddle(t *testing.T, dir string) {
	t.Helper()
	path, size := largestSSTable(t, dir)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 16)
	if _, err := f.ReadAt(buf, size/2); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] ^= 0xff
	}
	if _, err := f.WriteAt(buf, size/2); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptReadsAreReportedAndOtherKeysServed damages one block of the
// store: the member opens it, answers READ_CORRUPT for the damaged records
// and never their bytes, serves every other record, and reports the damage
// in its status and metrics.
func TestCorruptReadsAreReportedAndOtherKeysServed(t *testing.T) {
	const n = 3000
	dir := t.TempDir()
	writeStore(t, dir, n)
	flipMiddle(t, dir)

	m := startMember(t, dir, quickRestarts())
	eventually(t, "the store to open", m.status.StorageReady.Load)
	if m.status.LastCorruption() == "" {
		t.Error("the damage Open skipped is not recorded in the status")
	}
	corrupt := 0
	for id := range int64(n) {
		r := m.read(t, id, 1)
		switch r.GetStatus() {
		case messages.ReadStatus_READ_OK:
			if !bytes.Equal(r.GetPayload(), payload(id)) {
				t.Fatalf("read %d = %q, want %q: wrong bytes served", id, r.GetPayload(), payload(id))
			}
		case messages.ReadStatus_READ_CORRUPT:
			corrupt++
			if len(r.GetPayload()) != 0 {
				t.Fatalf("READ_CORRUPT for %d carries a payload", id)
			}
		default:
			t.Fatalf("read %d: %s %s", id, r.GetStatus(), r.GetError())
		}
	}
	if corrupt == 0 || corrupt > n/2 {
		t.Fatalf("%d of %d reads corrupt; want one damaged block's worth", corrupt, n)
	}
	if got := m.status.CorruptReads.Load(); got != uint64(corrupt) {
		t.Errorf("Status.CorruptReads = %d, want %d", got, corrupt)
	}
	if got := m.metric(t, "tolerex_member_corrupt_reads_total"); got != float64(corrupt) {
		t.Errorf("tolerex_member_corrupt_reads_total = %v, want %d", got, corrupt)
	}
	if !strings.Contains(m.status.LastCorruption(), "corrupt") {
		t.Errorf("LastCorruption = %q", m.status.LastCorruption())
	}
	if m.status.StoreCorrupt() != "" || !m.status.StorageReady.Load() {
		t.Errorf("store marked unusable after corrupt reads: %q", m.status.StoreCorrupt())
	}
	// Writes still work, including over a damaged record.
	for id := range int64(n) {
		if m.read(t, id, 1).GetStatus() == messages.ReadStatus_READ_CORRUPT {
			if msg := m.store(t, id, 1, payload(id)); msg != "" {
				t.Fatalf("rewriting damaged record %d: %s", id, msg)
			}
			if r := m.read(t, id, 1); r.GetStatus() != messages.ReadStatus_READ_OK || !bytes.Equal(r.GetPayload(), payload(id)) {
				t.Fatalf("rewritten record %d reads %s %q", id, r.GetStatus(), r.GetPayload())
			}
			break
		}
	}
}

// TestCorruptStoreIsReportedNotRestarted truncates the store's sstable so
// it cannot be opened: the storage actor stays up without a store, is not
// restarted, marks the member corrupt and answers requests with errors.
func TestCorruptStoreIsReportedNotRestarted(t *testing.T) {
	dir := t.TempDir()
	writeStore(t, dir, 1000)
	path, size := largestSSTable(t, dir)
	if err := os.Truncate(path, size/2); err != nil {
		t.Fatal(err)
	}

	m := startMember(t, dir, quickRestarts())
	eventually(t, "the store to be marked corrupt", func() bool { return m.status.StoreCorrupt() != "" })
	// Restarts would come within milliseconds (quickRestarts); give them
	// time to show.
	time.Sleep(300 * time.Millisecond)
	if restarts, live := m.registry.Restarts(messages.StorageActor); !live || restarts != 0 {
		t.Fatalf("storage actor live=%v restarts=%d; want live and never restarted", live, restarts)
	}
	if m.status.GaveUp.Load() || m.status.StorageReady.Load() {
		t.Fatalf("GaveUp=%v StorageReady=%v; want false false", m.status.GaveUp.Load(), m.status.StorageReady.Load())
	}
	if err := m.status.NotReady(); err == nil || !strings.HasPrefix(err.Error(), "storage corrupt: ") {
		t.Fatalf("NotReady() = %v; want storage corrupt", err)
	}
	if got := m.metric(t, "tolerex_member_storage_corrupt"); got != 1 {
		t.Errorf("tolerex_member_storage_corrupt = %v, want 1", got)
	}
	if r := m.read(t, 1, 1); r.GetStatus() != messages.ReadStatus_READ_FAILED || !strings.Contains(r.GetError(), "store is corrupt") {
		t.Errorf("read from a corrupt store: %s %q", r.GetStatus(), r.GetError())
	}
	if msg := m.store(t, 1, 2, []byte("x")); !strings.Contains(msg, "store is corrupt") {
		t.Errorf("store into a corrupt store: %q", msg)
	}
}

// TestLockedStoreIsRetriedThenStopped keeps let-it-crash for a store that
// cannot be opened for another reason: its lock is held, so the storage
// actor crashes, is restarted, and is stopped after MaxRestarts.
func TestLockedStoreIsRetriedThenStopped(t *testing.T) {
	dir := t.TempDir()
	holder, err := storage.Open(dir, storage.Options{Sync: true, OnCommit: func([]storage.Result) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()

	m := startMember(t, dir, quickRestarts())
	eventually(t, "the supervisor to give up", m.status.GaveUp.Load)
	if m.status.StoreCorrupt() != "" {
		t.Fatalf("a locked store is reported corrupt: %s", m.status.StoreCorrupt())
	}
	if err := m.status.NotReady(); err == nil || !strings.Contains(err.Error(), "kept crashing") {
		t.Fatalf("NotReady() = %v", err)
	}
}

// TestCompactionOnDamageMarksStoreCorrupt writes large records into a
// store with a damaged block until Pebble flushes and compacts into the
// damage: the store closes itself, and the member then reports it corrupt
// like a store that cannot be opened.
func TestCompactionOnDamageMarksStoreCorrupt(t *testing.T) {
	dir := t.TempDir()
	writeStore(t, dir, 1000)
	flipMiddle(t, dir)

	m := startMember(t, dir, quickRestarts())
	eventually(t, "the store to open", m.status.StorageReady.Load)
	big := bytes.Repeat([]byte("y"), 1<<20)
	// The memtable holds 16 MiB; a few times that forces flushes.
	for id := int64(0); id < 64 && m.status.StoreCorrupt() == ""; id++ {
		if msg := m.store(t, id, 2, big); msg != "" && !strings.Contains(msg, "corrupt") && !strings.Contains(msg, "closed") {
			t.Fatalf("store %d: %s", id, msg)
		}
	}
	eventually(t, "the store to be marked corrupt", func() bool { return m.status.StoreCorrupt() != "" })
	if m.status.StorageReady.Load() {
		t.Fatal("storage still ready after its store closed itself")
	}
	if r := m.read(t, 999, 1); r.GetStatus() != messages.ReadStatus_READ_FAILED {
		t.Fatalf("read after the store closed itself: %s %q", r.GetStatus(), r.GetError())
	}
	if restarts, _ := m.registry.Restarts(messages.StorageActor); restarts != 0 {
		t.Fatalf("storage actor restarted %d times", restarts)
	}
	if !strings.Contains(m.status.StoreCorrupt(), "background job") {
		t.Errorf("StoreCorrupt = %q; want the background job's error", m.status.StoreCorrupt())
	}
}
