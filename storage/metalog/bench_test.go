package metalog

import (
	"testing"
	"time"
)

// BenchmarkLogAppendSync measures closed-loop appends with an fsync per
// group commit: many goroutines each append one entry and wait for it.
func BenchmarkLogAppendSync(b *testing.B) {
	l := openTestLog(b, b.TempDir(), Options{Sync: true})
	data := make([]byte, 200)
	b.SetParallelism(64)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ch := make(chan Committed, 1)
		for pb.Next() {
			l.Append(data, ch)
			if c := waitCommitted(ch); c.Err != nil {
				b.Error(c.Err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	st := l.Stats()
	b.ReportMetric(float64(st.Entries)/elapsed.Seconds(), "ops/s")
	if st.Commits > 0 {
		b.ReportMetric(float64(st.Entries)/float64(st.Commits), "ops/commit")
	}
}
