package consensus

import (
	"sync"

	"github.com/tolerex/tolerex/actors/meta"
)

// StateView gives the other actors of a gateway read access to the state
// machine that the consensus actor applies committed entries to. The
// consensus actor is its only writer; readers see a state at some applied
// index, never a half-applied entry. A reader that needs a linearizable
// view asks for a ReadBarrier first.
type StateView struct {
	mu    sync.RWMutex
	state *meta.State
}

// NewStateView returns a view of an empty state.
func NewStateView() *StateView { return &StateView{state: meta.New()} }

// NewStateViewOf returns a view of state, which the caller must not change
// afterwards while others read the view (tests of the actors that read it
// build a state and hand it over).
func NewStateViewOf(state *meta.State) *StateView { return &StateView{state: state} }

// Read calls f with the state, which f must not keep or change.
func (v *StateView) Read(f func(*meta.State)) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	f(v.state)
}

// update calls f with the state to change it.
func (v *StateView) update(f func(*meta.State)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	f(v.state)
}

// replace swaps the whole state (restored from a snapshot).
func (v *StateView) replace(s *meta.State) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.state = s
}

// own returns the state for its writer to read without the lock: only the
// consensus actor calls it, and only it writes.
func (v *StateView) own() *meta.State { return v.state }
