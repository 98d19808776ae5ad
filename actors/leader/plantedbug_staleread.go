//go:build tolerex_plantedbug_staleread

package leader

func plantedBug(*leader, *write, *proposal) (propose bool) { return true }

// skipReadBarrier (a fault-suite build only, never shipped) makes the
// leader answer GETs from its own copy of the index without confirming
// through consensus that it still leads: a leader cut off from the other
// gateways goes on answering reads after the majority elected another and
// took newer writes.
func skipReadBarrier() bool { return true }
