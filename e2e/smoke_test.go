package e2e

import (
	"fmt"
	"testing"
)

func TestSmokeSetGet(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	cl := c.Dial(t)
	for i := 0; i < 100; i++ {
		if err := cl.Set(int64(i), []byte(fmt.Sprintf("value %d", i))); err != nil {
			t.Fatalf("SET %d: %v", i, err)
		}
	}
	for i := 0; i < 100; i++ {
		v, found, err := cl.Get(int64(i))
		if err != nil || !found || string(v) != fmt.Sprintf("value %d", i) {
			t.Fatalf("GET %d: %q %v %v", i, v, found, err)
		}
	}
	st := c.Status(t)
	total := int64(0)
	for _, m := range st.Members {
		total += m.Indexed
	}
	if total != 200 {
		t.Fatalf("indexed copies %d, want 200: %+v", total, st.Members)
	}
}
