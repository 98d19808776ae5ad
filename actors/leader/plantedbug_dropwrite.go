//go:build tolerex_plantedbug_dropwrite

package leader

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/tolerex/tolerex/messages"
)

// dropEvery makes the planted bug drop one write in this many.
const dropEvery = 16

// plantedBug (a fault-suite build only, never shipped) answers OK to one
// SET in dropEvery and drops it: its copies are pruned and its index entry
// never proposed. No fault is needed to see it.
func plantedBug(l *leader, ctx actor.Context, w *write, p *proposal) (propose bool) {
	if w.version%dropEvery != 0 {
		return true
	}
	l.reply(ctx, p.ref, &messages.ClientReply{Code: messages.ReplyCode_REPLY_OK})
	l.pruneCopies(ctx, w.id, w.version, uint32(len(w.payload)), w.place.stored)
	l.finish(ctx, w.id)
	return false
}

func skipReadBarrier() bool { return false }
