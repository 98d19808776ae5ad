package membership

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
)

// AnswerAlso makes the actor target, local to system, take the messages
// sent to name as well: a gateway answers member heartbeats at the name
// the membership actor had before it became the leader actor's sibling
// (messages.LegacyMembershipActor), so members of that version keep
// their place through a rolling upgrade. The alias is a process of its
// own that looks target up for every message, so a target restarted
// keeps getting them, and one stopped for good makes them dead letters
// (a request is answered DeadLetterResponse) rather than a queue no one
// reads. The sender of each message is kept: replies go straight back.
func AnswerAlso(system *actor.ActorSystem, name string, target *actor.PID) error {
	if _, added := system.ProcessRegistry.Add(&alias{system: system, target: target}, name); !added {
		return fmt.Errorf("membership: the name %q is taken", name)
	}
	return nil
}

// alias is the actor.Process registered under a second name.
type alias struct {
	system *actor.ActorSystem
	target *actor.PID
}

// SendUserMessage passes the message, with its envelope and so its
// sender, to the target.
func (a *alias) SendUserMessage(_ *actor.PID, message interface{}) {
	p, _ := a.system.ProcessRegistry.Get(a.target)
	p.SendUserMessage(a.target, message)
}

// SendSystemMessage passes system messages (Watch, Unwatch, Stop) to the
// target too: the alias is the target by another name.
func (a *alias) SendSystemMessage(_ *actor.PID, message interface{}) {
	p, _ := a.system.ProcessRegistry.Get(a.target)
	p.SendSystemMessage(a.target, message)
}

// Stop stops the target.
func (a *alias) Stop(_ *actor.PID) {
	p, _ := a.system.ProcessRegistry.Get(a.target)
	p.Stop(a.target)
}
