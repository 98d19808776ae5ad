//go:build tolerex_plantedbug_ackearly

package leader

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/tolerex/tolerex/messages"
)

// ackEarlyDelay is how long the planted bug holds an acknowledged write's
// index entry back from the metadata log.
const ackEarlyDelay = 200 * time.Millisecond

// plantedBug (a fault-suite build only, never shipped) answers OK to a SET
// as soon as its copies are stored and appends its index entry to the
// metadata log only ackEarlyDelay later: a gateway killed meanwhile loses
// writes it acknowledged. Reads of the id still wait for the entry, so
// without a crash the history stays linearizable.
func plantedBug(l *leader, ctx actor.Context, _ *write, p *proposal) (propose bool) {
	data, err := proto.Marshal(p.entry)
	if err != nil {
		return true
	}
	l.reply(ctx, p.client, &messages.ClientReply{RequestId: p.request, Code: messages.ReplyCode_REPLY_OK})
	p.client = nil // answered already
	mlog := l.metaLog
	time.AfterFunc(ackEarlyDelay, func() { mlog.Append(data, p) })
	return false
}
