package leader

import "slices"

// placement decides where one write's copies go. It is a pure state
// machine: the leader tells it what happened (the selector answered, a
// member stored its copy, a copy failed) and does what it answers (ask the
// selector for members, send copies), so the rules can be tested without
// actors or clocks.
//
// A write's members are distinct by construction: at most one selection
// is outstanding at a time, it excludes every member ever chosen for the
// write, and a member the selector returns again anyway is dropped. A copy
// that fails while a selection is outstanding is replaced by the next
// selection, which starts when the outstanding one is answered and so
// excludes what it chose. (Two selections in flight at once, each
// excluding only the members chosen before it, once picked the same
// member twice for one write: issue 8.)
//
// A member whose copy timed out while it still looked live may be asked
// once more, but only when the selector has nobody new: its answer may
// have been lost rather than never sent (protoactor drops what a member
// sends while its connection to a restarted gateway is being replaced),
// and a write refused while every member is live is worse than one that
// waits another store timeout.
type placement struct {
	need     int
	chosen   []uint32 // every member chosen for the write, distinct, in order
	stored   []uint32 // members that stored their copy durably
	inflight int      // copies sent and not answered yet
	// asking is the count of the outstanding selection; 0 means none is.
	asking int
	// wanted is how many more members to ask for once the outstanding
	// selection is answered.
	wanted int
	// refused is set when the first selection found fewer live members
	// than need: the write fails without sending anything.
	refused bool
	// timedOut are chosen members whose copy timed out while they looked
	// live, not asked again yet; askedAgain those asked a second time.
	timedOut   []uint32
	askedAgain []uint32
}

// selection asks the selector for count members, none of them in exclude.
type selection struct {
	count   int
	exclude []uint32
}

// newPlacement starts placing need copies and returns the first selection.
func newPlacement(need int) (*placement, selection) {
	p := &placement{need: need, asking: need}
	return p, selection{count: need}
}

// selected takes the answer to the outstanding selection. It returns the
// members to send a copy to (each counted in flight until copyStored or
// copyFailed) and the next selection to ask for, if replacements were
// wanted meanwhile.
func (p *placement) selected(members []uint32) (send []uint32, next *selection) {
	asked := p.asking
	p.asking = 0
	if len(p.chosen) == 0 && len(members) < p.need {
		p.refused = true
		return nil, nil
	}
	for _, slot := range members {
		if len(send) == asked {
			break
		}
		if slices.Contains(p.chosen, slot) {
			continue // chosen before (or twice in this answer): never twice
		}
		p.chosen = append(p.chosen, slot)
		send = append(send, slot)
	}
	// The selector had no other live member: ask members whose copy timed
	// out again, each once.
	for len(send) < asked && len(p.timedOut) > 0 {
		slot := p.timedOut[0]
		p.timedOut = p.timedOut[1:]
		p.askedAgain = append(p.askedAgain, slot)
		send = append(send, slot)
	}
	p.inflight += len(send)
	// Members asked for and not found are not asked for again: the
	// write cannot get them.
	return send, p.ask()
}

// copyStored records that slot stored its copy durably.
func (p *placement) copyStored(slot uint32) {
	p.inflight--
	p.stored = append(p.stored, slot)
}

// copyFailed records that a copy sent to a member failed (an error, a
// timeout, the member went down, or it was down before the copy could be
// sent), and returns the selection for its replacement if it can start now.
func (p *placement) copyFailed() *selection {
	p.inflight--
	p.wanted++
	return p.ask()
}

// copyTimedOut records that the copy sent to slot went unanswered in time
// while the member still looked live, and returns the selection for its
// replacement if it can start now. If the selector has nobody new, slot
// is asked again (once).
func (p *placement) copyTimedOut(slot uint32) *selection {
	if !slices.Contains(p.askedAgain, slot) {
		p.timedOut = append(p.timedOut, slot)
	}
	return p.copyFailed()
}

// copyLate records that a copy in flight is late while its member may
// still answer, and returns the selection for one more member to store a
// copy too, if it can start now. The late copy stays in flight: whichever
// need copies are stored first complete the write (replicas), and a
// copy stored after that is not named by it.
func (p *placement) copyLate() *selection {
	p.wanted++
	return p.ask()
}

// isAskedAgain reports whether slot was sent its copy a second time.
func (p *placement) isAskedAgain(slot uint32) bool { return slices.Contains(p.askedAgain, slot) }

// ask starts a selection for the wanted members unless one is outstanding.
func (p *placement) ask() *selection {
	if p.asking > 0 || p.wanted == 0 {
		return nil
	}
	p.asking, p.wanted = p.wanted, 0
	return &selection{count: p.asking, exclude: slices.Clone(p.chosen)}
}

// complete reports whether need copies are stored.
func (p *placement) complete() bool { return len(p.stored) >= p.need }

// hopeless reports whether the write can no longer get need copies: the
// first selection found too few members, or nothing is in flight or being
// selected that could make up the missing copies.
func (p *placement) hopeless() bool {
	if p.refused {
		return true
	}
	return p.asking == 0 && p.wanted == 0 && len(p.stored)+p.inflight < p.need
}

// replicas returns the members that stored a copy, for the index entry.
func (p *placement) replicas() []uint32 { return slices.Clone(p.stored) }
