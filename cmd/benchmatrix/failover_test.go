package main

import (
	"testing"
	"time"

	"github.com/tolerex/tolerex/gateway/codec"
)

func TestDistributionNearestRank(t *testing.T) {
	values := make([]float64, 20)
	for i := range values {
		values[i] = float64(20 - i) // 20, 19, ..., 1
	}
	d := distribution(values)
	if d.P50 != 10 || d.P99 != 20 || d.Max != 20 {
		t.Errorf("distribution of 1..20 = %+v, want p50 10, p99 20 (the highest of 20), max 20", d)
	}
	if d := distribution(nil); d != (Distribution{}) {
		t.Errorf("distribution of nothing = %+v", d)
	}
}

func TestMeasureRound(t *testing.T) {
	at := time.Unix(1000, 0)
	after := func(ms int) time.Time { return at.Add(time.Duration(ms) * time.Millisecond) }
	a := &writer{acked: []ack{
		{sent: after(-1500), done: after(-1400)}, // before the baseline second
		{sent: after(-10), done: after(-5)},      // baseline
		{sent: after(-2), done: after(1)},        // in flight at the signal, answered at once
		{sent: after(-1), done: after(700)},      // in flight: waited for the new leader
		{sent: after(700), done: after(705)},     // resumed
	}, failures: []failure{
		{at: after(-100), class: codec.Indeterminate, text: "before"},
		{at: after(300), class: codec.Definite, text: "ERROR: overloaded: x"},
	}}
	b := &writer{acked: []ack{
		{sent: after(-3), done: after(650)},
		{sent: after(650), done: after(660)},
	}, failures: []failure{{at: after(10_000), class: codec.Indeterminate, text: "ERROR: outcome unknown: y"}}}
	w := &writers{conns: []*writer{a, b}}
	r := &FailoverRound{Recovered: true}
	w.measure(r, at, after(2000))
	if r.FirstAckMs != 660 || r.AllResumedMs != 705 {
		t.Errorf("first ack %v ms, all resumed %v ms; want 660 and 705", r.FirstAckMs, r.AllResumedMs)
	}
	if r.LongestGapMs != 649 { // from the reply at 1 ms to the one at 650 ms
		t.Errorf("longest gap %v ms, want 649", r.LongestGapMs)
	}
	if r.BaselineOpsPerSec != 1 || r.ErrorsBefore != 1 || r.Definite != 1 || r.Indeterminate != 1 {
		t.Errorf("baseline %v, errors before %d, definite %d, indeterminate %d; want 1 each", r.BaselineOpsPerSec, r.ErrorsBefore, r.Definite, r.Indeterminate)
	}
	if got := w.lastResume(at); got != 705*time.Millisecond {
		t.Errorf("last resume %v, want 705ms", got)
	}
	if n := w.resumedSince(at); n != 0 { // lastSent is kept by record, not by this fixture
		t.Errorf("resumedSince without record: %d", n)
	}

	notRecovered := &FailoverRound{}
	(&writers{conns: []*writer{{acked: []ack{{sent: after(-3), done: after(-1)}}}}}).measure(notRecovered, at, after(31_000))
	if notRecovered.FirstAckMs != ms(recoverLimit) || notRecovered.AllResumedMs != ms(recoverLimit) || notRecovered.LongestGapMs != 31_000 {
		t.Errorf("a round that never recovered: %+v", notRecovered)
	}
}

func TestRecordClassifies(t *testing.T) {
	wr := &writer{}
	sent := time.Now()
	wr.record(sent, sent.Add(time.Millisecond), nil)
	if wr.acks.Load() != 1 || wr.lastSent.Load() != sent.UnixNano() {
		t.Errorf("an acknowledged write was not counted")
	}
	wr.record(sent, time.Time{}, errTest("dial refused")) // never sent
	if f := wr.failures[0]; f.class != codec.Definite {
		t.Errorf("a write that was never sent is %v, want definite", f.class)
	}
	wr.record(sent, sent.Add(time.Second), errTest("read: i/o timeout"))
	if f := wr.failures[1]; f.class != codec.Indeterminate {
		t.Errorf("a timeout is %v, want indeterminate", f.class)
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }
