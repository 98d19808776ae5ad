package storage

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

// benchmarkPut measures closed-loop puts: many goroutines each submit one op
// and wait for its Result, so the store sees the concurrency a busy member
// sees and group commit can do its work.
func benchmarkPut(b *testing.B, sync bool) {
	s := openTestStore(b, b.TempDir(), Options{Sync: sync})
	payload := make([]byte, 256)
	var nextID atomic.Int64
	b.SetParallelism(64)
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ch := make(chan error, 1)
		for pb.Next() {
			s.Submit(Op{Kind: OpPut, ID: nextID.Add(1), Version: 1, Payload: payload, Token: ch})
			if err := waitResult(ch); err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	st := s.Stats()
	b.ReportMetric(float64(st.Ops)/elapsed.Seconds(), "ops/s")
	if st.Commits > 0 {
		b.ReportMetric(float64(st.Ops)/float64(st.Commits), "ops/commit")
	}
}

// BenchmarkStorePutSync measures puts with an fsync per group commit.
func BenchmarkStorePutSync(b *testing.B) { benchmarkPut(b, true) }

// BenchmarkStorePutNoSync measures puts without fsync (unsafe mode).
func BenchmarkStorePutNoSync(b *testing.B) { benchmarkPut(b, false) }

// BenchmarkStoreGet measures parallel point reads of existing records.
func BenchmarkStoreGet(b *testing.B) {
	s := openTestStore(b, b.TempDir(), Options{Sync: false})
	const records = 10000
	payload := make([]byte, 256)
	chs := make([]chan error, records)
	for i := range records {
		chs[i] = s.submit(Op{Kind: OpPut, ID: int64(i), Version: uint64(i % 3), Payload: payload})
	}
	for _, ch := range chs {
		if err := waitResult(ch); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	start := time.Now()
	var reads atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		n := int64(0)
		for pb.Next() {
			i := rand.IntN(records)
			if _, err := s.Get(int64(i), uint64(i%3)); err != nil {
				b.Error(fmt.Errorf("get %d: %w", i, err))
				return
			}
			n++
		}
		reads.Add(n)
	})
	b.ReportMetric(float64(reads.Load())/time.Since(start).Seconds(), "ops/s")
}
