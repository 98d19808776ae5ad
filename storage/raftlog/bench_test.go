package raftlog

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// benchEntryBytes is the data size of a benchmark entry: a small metadata
// command.
const benchEntryBytes = 128

// reportRates adds entries/s, fsyncs/s (commits with Sync) and entries per
// commit over elapsed.
func reportRates(b *testing.B, l *Log, elapsed time.Duration) {
	st := l.Stats()
	b.ReportMetric(float64(st.Entries)/elapsed.Seconds(), "entries/s")
	b.ReportMetric(float64(st.Commits)/elapsed.Seconds(), "fsyncs/s")
	if st.Commits > 0 {
		b.ReportMetric(float64(st.Entries)/float64(st.Commits), "entries/fsync")
	}
}

// BenchmarkWriteSyncParallel measures closed-loop Writes of one small entry
// and a hard state with an fsync per group commit: 64 goroutines each
// write and wait for the report. Indexes are assigned in Write-call order,
// as raft's single stream of MsgStorageAppend would.
func BenchmarkWriteSyncParallel(b *testing.B) {
	l := openTestLog(b, b.TempDir(), Options{Sync: true})
	data := make([]byte, benchEntryBytes)
	var (
		mu   sync.Mutex
		next uint64 = 1
	)
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0))) // 64 writers
	b.SetBytes(benchEntryBytes)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ch := make(chan Written, 1)
		for pb.Next() {
			mu.Lock()
			index := next
			next++
			l.Write(Write{
				Entries:   []*raftpb.Entry{{Index: new(index), Term: new(uint64(1)), Data: data}},
				HardState: hardState(1, 1, index),
				Token:     ch,
			})
			mu.Unlock()
			if w := waitWritten(ch); w.Err != nil {
				b.Error(w.Err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	reportRates(b, l.Log, elapsed)
}

// BenchmarkWritePipelined measures one writer that, like raft's Ready loop
// under load, keeps up to 256 Writes of one small entry in flight without
// waiting for each.
func BenchmarkWritePipelined(b *testing.B) {
	l := openTestLog(b, b.TempDir(), Options{Sync: true})
	data := make([]byte, benchEntryBytes)
	inFlight := make(chan Written, 256)
	b.SetBytes(benchEntryBytes)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if i >= cap(inFlight) {
			if w := waitWritten(inFlight); w.Err != nil {
				b.Fatal(w.Err)
			}
		}
		index := uint64(i + 1)
		l.Write(Write{
			Entries:   []*raftpb.Entry{{Index: new(index), Term: new(uint64(1)), Data: data}},
			HardState: hardState(1, 1, index),
			Token:     inFlight,
		})
	}
	for range min(b.N, cap(inFlight)) {
		if w := waitWritten(inFlight); w.Err != nil {
			b.Fatal(w.Err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	reportRates(b, l.Log, elapsed)
}

// BenchmarkCreateSnapshot16MiB measures storing a 16 MiB snapshot (16
// chunks, one batch, one fsync) with compaction.
func BenchmarkCreateSnapshot16MiB(b *testing.B) {
	l := openTestLog(b, b.TempDir(), Options{Sync: true})
	data := snapshotData(1, 16<<20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		index := uint64(i + 1)
		l.mustWrite(b, Write{Entries: entries(index, index, 1), HardState: hardState(1, 1, index)})
		b.StartTimer()
		l.mustCreateSnapshot(b, index, confState(1, 2, 3), data, 0)
	}
}
