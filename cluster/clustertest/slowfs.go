package clustertest

import (
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// slowSyncFS is the operating system's filesystem with a delay, set at run
// time, before every fsync of a file written through it: a slow disk under
// a gateway's Raft log.
type slowSyncFS struct {
	vfs.FS
	delay *atomic.Int64 // nanoseconds
}

func (fs slowSyncFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return slowSyncFile{File: f, delay: fs.delay}, nil
}

func (fs slowSyncFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.Create(name, category))
}

func (fs slowSyncFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenReadWrite(name, category, opts...))
}

func (fs slowSyncFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.ReuseForWrite(oldname, newname, category))
}

func (fs slowSyncFS) OpenDir(name string) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenDir(name))
}

// slowSyncFile waits before each of its fsyncs.
type slowSyncFile struct {
	vfs.File
	delay *atomic.Int64
}

func (f slowSyncFile) wait() { time.Sleep(time.Duration(f.delay.Load())) }

func (f slowSyncFile) Sync() error {
	f.wait()
	return f.File.Sync()
}

func (f slowSyncFile) SyncData() error {
	f.wait()
	return f.File.SyncData()
}

func (f slowSyncFile) SyncTo(length int64) (bool, error) {
	f.wait()
	return f.File.SyncTo(length)
}
