package summary

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tolerex/tolerex/e2e/chaos/history"
)

func at(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func TestCountOps(t *testing.T) {
	ops := []history.Op{
		{Kind: history.Set, Status: history.OK, Call: at(0.5), Return: at(1)},
		{Kind: history.Get, Status: history.Found, Call: at(1), Return: at(2)},
		{Kind: history.Set, Status: history.Unknown, Call: at(2), Return: at(3)},
		{Kind: history.Set, Status: history.Failed, Call: at(3), Return: at(4)},
		{Kind: history.Del, Status: history.NotFound, Call: at(6), Return: at(7)}, // a write: 1 -> 7
		{Kind: history.Get, Status: history.NotFound, Call: at(7), Return: at(8)},
		{Kind: history.Get, Status: history.Unknown, Call: at(8), Return: at(9)},
		{Kind: history.Get, Status: history.Found, Final: true, Call: at(11), Return: at(12)},
	}
	s := CountOps(ops, at(10))
	if s.All != (Counts{Total: 7, Succeeded: 4, Failed: 1, Unknown: 2}) {
		t.Errorf("all: %+v", s.All)
	}
	if s.ByKind[history.Set] != (Counts{Total: 3, Succeeded: 1, Failed: 1, Unknown: 1}) {
		t.Errorf("SET: %+v", s.ByKind[history.Set])
	}
	if s.FinalReads != (Counts{Total: 1, Succeeded: 1}) {
		t.Errorf("final reads: %+v", s.FinalReads)
	}
	if s.LongestWithoutWrite != at(6) {
		t.Errorf("longest without write %s, want 6s", s.LongestWithoutWrite)
	}
	if s.LongestWithoutRead != at(6) { // 2 -> 8
		t.Errorf("longest without read %s, want 6s", s.LongestWithoutRead)
	}
	if s.Throughput != 0.4 {
		t.Errorf("throughput %v, want 0.4", s.Throughput)
	}
}

func TestLongestGap(t *testing.T) {
	if got := longestGap(nil, at(5)); got != at(5) {
		t.Errorf("no events: %s", got)
	}
	if got := longestGap([]time.Duration{at(4), at(1)}, at(5)); got != at(3) {
		t.Errorf("unsorted: %s", got)
	}
	if got := longestGap([]time.Duration{at(1), at(9)}, at(5)); got != at(4) {
		t.Errorf("past the end: %s", got)
	}
}

func TestRender(t *testing.T) {
	s := Summary{Seed: 42, FaultSpec: "member", FaultsByKind: map[string]int{"kill": 2, "pause": 1}, Verdict: "not linearizable", BadIDs: []int64{3}}
	s.Fail("not linearizable on ids [3]")
	s.Finish()
	text := s.Text()
	for _, want := range []string{"FAILED", "seed 42", "kill 2, pause 1", "linearizable: no", "ids at fault: [3]", "FAILURE: not linearizable"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	var buf bytes.Buffer
	if err := s.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Summary
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back.Seed != 42 || back.Passed {
		t.Errorf("JSON round trip: %+v %v", back, err)
	}
}
