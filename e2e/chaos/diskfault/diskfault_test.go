package diskfault

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func mounted(t *testing.T, dir string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(data), " "+dir+" tmpfs ")
}

func TestFillAndFree(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	dir := filepath.Join(t.TempDir(), "disk")
	d, err := Mount(dir, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Unmount(); err != nil {
			t.Error(err)
		}
		if mounted(t, dir) {
			t.Error("still mounted after Unmount")
		}
		if err := d.Unmount(); err != nil {
			t.Errorf("second Unmount: %v", err)
		}
	})
	if !mounted(t, dir) {
		t.Fatal("not mounted")
	}
	data := make([]byte, 64<<10)
	if err := os.WriteFile(filepath.Join(dir, "before"), data, 0o600); err != nil {
		t.Fatalf("write before filling: %v", err)
	}
	if err := d.Fill(0); err != nil {
		t.Fatal(err)
	}
	err = os.WriteFile(filepath.Join(dir, "full"), data, 0o600)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write on a full disk: %v, want ENOSPC", err)
	}
	if err := d.Unfill(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "after"), data, 0o600); err != nil {
		t.Fatalf("write after freeing: %v", err)
	}
	// Filling with room left keeps that room.
	if err := d.Fill(1 << 20); err != nil {
		t.Fatal(err)
	}
	if free, err := d.Free(); err != nil || free < 1<<20-64<<10 || free > 1<<20+64<<10 {
		t.Errorf("free after Fill(1 MiB): %d, %v", free, err)
	}
}

func TestStaleMount(t *testing.T) {
	dead := func(pid int) bool { return pid == 5 }
	for line, want := range map[string][]string{
		"tmpfs /tmp/tolerex-chaos-7-abc/member-1 tmpfs rw,size=4096k 0 0": {"/tmp/tolerex-chaos-7-abc/member-1"},
		"tmpfs /tmp/tolerex-chaos-5-abc/member-1 tmpfs rw,size=4096k 0 0": nil, // alive
		"/dev/sda1 /tmp/tolerex-chaos-7-abc ext4 rw 0 0":                  nil, // not tmpfs
		"tmpfs /dev/shm tmpfs rw 0 0":                                     nil,
	} {
		if got := staleMount(line, dead); !slices.Equal(got, want) {
			t.Errorf("staleMount(%q) = %v, want %v", line, got, want)
		}
	}
}

func TestCleanStale(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	pid := 4194000
	for alive(pid) {
		pid--
	}
	dir := filepath.Join(t.TempDir(), MountPrefix+strconv.Itoa(pid)+"-x", "member-1")
	d, err := Mount(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Unmount() })
	removed, err := CleanStale()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, dir) || mounted(t, dir) {
		t.Errorf("removed %v; %s still mounted: %v", removed, dir, mounted(t, dir))
	}
}
