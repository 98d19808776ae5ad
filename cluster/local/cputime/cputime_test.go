package cputime

import (
	"os"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	// The command name may hold spaces and parentheses; utime 1234 and
	// stime 567 are fields 14 and 15.
	stat := "4242 (tx (a) b) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 9 0 100 0 0\n"
	got, err := parse([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if got != 18010*time.Millisecond {
		t.Fatalf("CPU time %v, want (1234+567) ticks of 10ms", got)
	}
	if _, err := parse([]byte("4242 (tx) S 1 2")); err == nil {
		t.Fatal("a short /proc/PID/stat was accepted")
	}
}

func TestOfThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here:", err)
	}
	before, err := Of(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel's 10 ms steps show at least 20 ms more.
	deadline := time.Now().Add(5 * time.Second)
	for {
		now, err := Of(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now-before >= 20*time.Millisecond {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s of spinning showed %v of CPU time", now-before)
		}
	}
}
