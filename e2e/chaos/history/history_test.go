package history

import (
	"bytes"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestRecorderOrdersByCall(t *testing.T) {
	r := NewRecorder()
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				call := r.Now()
				r.Add(Op{Client: c, Kind: Set, ID: int64(i), Value: "v", Status: OK, Call: call, Return: r.Now()})
			}
		}()
	}
	wg.Wait()
	ops := r.Ops()
	if len(ops) != 200 {
		t.Fatalf("%d ops", len(ops))
	}
	for i := 1; i < len(ops); i++ {
		if ops[i].Call < ops[i-1].Call {
			t.Fatalf("op %d called before op %d", i, i-1)
		}
	}
}

func TestWriteRead(t *testing.T) {
	ops := []Op{
		{Process: 1, Client: 0, Kind: Set, ID: 3, Value: "a b", Status: OK, Call: time.Millisecond, Return: 2 * time.Millisecond, Gateway: "127.0.0.1:1"},
		{Process: 2, Client: 1, Kind: Get, ID: 3, Status: Unknown, Error: "read: timeout", Call: 3, Return: 4},
		{Process: 3, Client: 1, Kind: Del, ID: 3, Status: NotFound, Call: 5, Return: 6, Final: true},
	}
	var buf bytes.Buffer
	if err := Write(&buf, ops); err != nil {
		t.Fatal(err)
	}
	got, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ops) {
		t.Fatalf("read back %+v, want %+v", got, ops)
	}
}

func TestStatus(t *testing.T) {
	for s, want := range map[Status][2]bool{
		OK: {true, true}, Found: {true, true}, NotFound: {true, true}, Failed: {true, false}, Unknown: {false, false},
	} {
		if s.Definite() != want[0] || s.Succeeded() != want[1] {
			t.Errorf("%s: Definite %v Succeeded %v, want %v", s, s.Definite(), s.Succeeded(), want)
		}
	}
}

func TestOpString(t *testing.T) {
	op := Op{Process: 4, Kind: Get, ID: 9, Value: "x", Status: Found}
	if got := op.String(); got != "p4 GET 9 -> found x" {
		t.Errorf("String() = %q", got)
	}
}
