//go:build !tolerex_plantedbug_ackearly && !tolerex_plantedbug_dropwrite

package leader

// plantedBug is where the fault suite plants bugs, to show that its
// checker finds them (e2e/chaos_test.go). Binaries built with the tag
// tolerex_plantedbug_ackearly or tolerex_plantedbug_dropwrite get a buggy
// version from plantedbug_<name>.go; every other build gets this one, which
// lets a write whose copies are stored go on to propose its index entry.
func plantedBug(*leader, *write, *proposal) (propose bool) { return true }
