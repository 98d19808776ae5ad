//go:build tolerex_plantedbug_dropwrite

package leader

import (
	"github.com/tolerex/tolerex/messages"
)

// dropEvery makes the planted bug drop one write in this many.
const dropEvery = 16

// plantedBug (a fault-suite build only, never shipped) answers OK to one
// SET in dropEvery and drops it: its copies are pruned and its index entry
// never proposed. No fault is needed to see it.
func plantedBug(l *leader, w *write, p *proposal) (propose bool) {
	if w.version%dropEvery != 0 {
		return true
	}
	l.reply(p.ref, &messages.ClientReply{Code: messages.ReplyCode_REPLY_OK})
	l.pruneCopies(w.id, w.version, uint32(len(w.payload)), w.place.stored)
	l.finish(w.id)
	return false
}
