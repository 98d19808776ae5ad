//go:build tolerex_plantedbug_ackearly

package leader

import (
	"time"

	"github.com/tolerex/tolerex/messages"
)

// ackEarlyDelay is how long the planted bug holds an acknowledged write's
// index entry back from the log.
const ackEarlyDelay = 200 * time.Millisecond

// plantedBug (a fault-suite build only, never shipped) answers OK to a SET
// as soon as its copies are stored and proposes its index entry only
// ackEarlyDelay later: a leader killed meanwhile loses writes it
// acknowledged. Reads of the id still wait for the entry, so without a
// crash the history stays linearizable.
func plantedBug(l *leader, _ *write, p *proposal) (propose bool) {
	l.reply(p.ref, &messages.ClientReply{Code: messages.ReplyCode_REPLY_OK})
	self, root := l.self, l.root
	late := &lateProposal{p: p, term: l.term}
	time.AfterFunc(ackEarlyDelay, func() { root.Send(self, late) })
	return false
}

// lateProposal is the planted bug's delayed proposal.
type lateProposal struct {
	p    *proposal
	term uint64
}

func (m *lateProposal) run(l *leader) {
	if l.term == m.term && l.active {
		m.p.ref = clientRef{} // answered already
		_ = l.propose(m.p)
	}
}
