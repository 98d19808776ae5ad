// Package diskfault gives a node a small disk that the fault suite can
// fill up and free again: a tmpfs of a fixed size mounted on the node's
// data dir, a filler file that takes the free space, and an unmount that
// the tool always runs, even after a failure. CleanStale unmounts what a
// crashed run left behind.
package diskfault

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/tolerex/tolerex/storage/diskspace"
)

// MountPrefix starts the name of every run directory whose mounts
// CleanStale may remove: tolerex-chaos-<pid>-...
const MountPrefix = "tolerex-chaos-"

// fillerName is the file that takes the free space.
const fillerName = ".tolerex-chaos-filler"

// Available reports why small disks cannot be made here, or nil: mounting
// a tmpfs needs root and the mount command.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("a small disk (tmpfs) needs root")
	}
	for _, cmd := range []string{"mount", "umount"} {
		if _, err := exec.LookPath(cmd); err != nil {
			return fmt.Errorf("a small disk needs %s: %w", cmd, err)
		}
	}
	return nil
}

// Disk is a tmpfs of a fixed size mounted on a directory.
type Disk struct {
	Dir  string
	Size int64

	mu      sync.Mutex
	mounted bool
	filled  bool
}

// Mount creates dir and mounts a tmpfs of size bytes on it.
func Mount(dir string, size int64) (*Disk, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if size < 1<<20 {
		return nil, fmt.Errorf("disk of %d bytes: at least 1 MiB", size)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create mount point: %w", err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "tmpfs", dir).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("mount tmpfs on %s: %w: %s", dir, err, strings.TrimSpace(string(out)))
	}
	return &Disk{Dir: dir, Size: size, mounted: true}, nil
}

// Free is the space left on the disk, in bytes.
func (d *Disk) Free() (int64, error) { return freeIn(d.Dir) }

// freeIn is the free space (for unprivileged users) of dir's filesystem,
// as the nodes' own disk guards see it.
func freeIn(dir string) (int64, error) {
	u, err := diskspace.Statfs(dir)
	if err != nil {
		return 0, err
	}
	return int64(u.Free), nil
}

// Fill takes the disk's free space with a filler file, leaving about
// leave bytes.
func (d *Disk) Fill(leave int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.mounted {
		return errors.New("fill: disk not mounted")
	}
	d.filled = true
	return FillFile(filepath.Join(d.Dir, fillerName), leave)
}

// FillFile grows the file at path (creating it) until its filesystem has
// about leave bytes free.
func FillFile(path string, leave int64) error {
	free, err := freeIn(filepath.Dir(path))
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("create filler: %w", err)
	}
	if n := free - leave; n > 0 {
		st, err := f.Stat()
		if err == nil {
			err = syscall.Fallocate(int(f.Fd()), 0, st.Size(), n)
		}
		if err != nil && !errors.Is(err, syscall.ENOSPC) {
			f.Close()
			return fmt.Errorf("fill %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close filler: %w", err)
	}
	return nil
}

// Unfill deletes the filler file.
func (d *Disk) Unfill() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.filled = false
	if err := os.Remove(filepath.Join(d.Dir, fillerName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete filler: %w", err)
	}
	return nil
}

// Unmount unmounts the tmpfs (and with it everything on it). Processes
// using it must be gone. It is safe to call more than once.
func (d *Disk) Unmount() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.mounted {
		return nil
	}
	if err := unmount(d.Dir); err != nil {
		return err
	}
	d.mounted = false
	return nil
}

// unmount unmounts dir, lazily if it is busy (a process that has not been
// reaped yet still holds it).
func unmount(dir string) error {
	out, err := exec.Command("umount", dir).CombinedOutput()
	if err == nil {
		return nil
	}
	if lazy, lerr := exec.Command("umount", "-l", dir).CombinedOutput(); lerr != nil {
		return fmt.Errorf("unmount %s: %w: %s; lazily: %s", dir, err, strings.TrimSpace(string(out)), strings.TrimSpace(string(lazy)))
	}
	return nil
}

// CleanStale unmounts the tmpfs mounts left by runs that died: those
// under a directory named tolerex-chaos-<pid>-... whose pid is gone. It
// returns the mount points it removed.
func CleanStale() ([]string, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		points = append(points, staleMount(sc.Text(), alive)...)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	var removed []string
	var errs []error
	for _, p := range points {
		if err := unmount(p); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}

var runDir = regexp.MustCompile(`/` + MountPrefix + `(\d+)-`)

// staleMount returns the mount point of a /proc/mounts line if it is a
// tmpfs under a run directory whose pid is not alive.
func staleMount(line string, alive func(int) bool) []string {
	f := strings.Fields(line)
	if len(f) < 3 || f[2] != "tmpfs" {
		return nil
	}
	m := runDir.FindStringSubmatch(f[1])
	if m == nil {
		return nil
	}
	pid, err := strconv.Atoi(m[1])
	if err != nil || alive(pid) {
		return nil
	}
	return []string{f[1]}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
