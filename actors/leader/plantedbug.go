//go:build !tolerex_plantedbug_ackearly && !tolerex_plantedbug_dropwrite && !tolerex_plantedbug_staleread

package leader

// plantedBug is where the fault suite plants bugs, to show that its
// checker finds them (e2e/chaos_test.go). Binaries built with the tag
// tolerex_plantedbug_ackearly, tolerex_plantedbug_dropwrite or
// tolerex_plantedbug_staleread get a buggy
// version from plantedbug_<name>.go; every other build gets this one, which
// lets a write whose copies are stored go on to propose its index entry.
func plantedBug(*leader, *write, *proposal) (propose bool) { return true }

// skipReadBarrier is the hook of the stale-read planted bug: normal builds
// confirm leadership before every read.
func skipReadBarrier() bool { return false }
