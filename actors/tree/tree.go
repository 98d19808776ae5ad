// Package tree keeps the live supervision tree of one node's actors: which
// actors run, who supervises whom, how often each was restarted and how
// many messages wait in its mailbox. Actors become visible by being spawned
// from props made by Registry.Props; mailbox depth is measured by a mailbox
// middleware of our own (protoactor's mailbox gauge is broken at the
// version we use).
package tree

import (
	"fmt"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tolerex/tolerex/messages"
)

// Registry records the live actors of one actor system. It is safe for
// concurrent use.
type Registry struct {
	mu         sync.Mutex
	actors     map[string]*liveActor
	dispatcher actor.Dispatcher
}

type liveActor struct {
	id       string
	parent   string
	kind     string
	restarts atomic.Uint32
	mailbox  *mailboxDepth
	// Guarded by Registry.mu:
	failure  *messages.ActorFailure // the last crash, if any
	crashed  bool                   // crashed, and not restarted since
	stopped  bool                   // stopped for good after a crash
	failures uint32
}

// Failure is what an actor spawned from a Registry's props panics with as
// far as its supervisor can see: the registry's middleware recovers the
// original panic, records it, and panics again with a Failure that keeps
// the value and the stack where it happened (protoactor hands supervisors
// the panic value only, and its stack is gone by then).
type Failure struct {
	// Value is what the actor panicked with.
	Value any
	// Stack is the goroutine's stack at the panic.
	Stack []byte
	// MessageType is the Go type of the message being handled.
	MessageType string
}

// Error returns the panic value as text.
func (f *Failure) Error() string { return fmt.Sprint(f.Value) }

// Unwrap returns the panic value if it is an error.
func (f *Failure) Unwrap() error {
	if err, ok := f.Value.(error); ok {
		return err
	}
	return nil
}

// Reason returns the text of a supervisor's failure reason and, if the
// actor came from a Registry's props, the stack of its panic.
func Reason(reason any) (text string, stack string) {
	if f, ok := reason.(*Failure); ok {
		return f.Error(), string(f.Stack)
	}
	return fmt.Sprint(reason), ""
}

// NewRegistry returns an empty registry. Actors spawned from its props run
// on dispatcher, or on protoactor's default one if dispatcher is nil.
func NewRegistry(dispatcher actor.Dispatcher) *Registry {
	return &Registry{actors: make(map[string]*liveActor), dispatcher: dispatcher}
}

// Props returns props for exactly one spawn of an actor of the given kind
// that shows up in the tree. Make new props for every spawn: the mailbox
// depth counter belongs to the props.
func (r *Registry) Props(kind string, producer actor.Producer, opts ...actor.PropsOption) *actor.Props {
	depth := &mailboxDepth{}
	track := func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(ctx actor.ReceiverContext, env *actor.MessageEnvelope) {
			switch env.Message.(type) {
			case *actor.Started:
				r.started(ctx.Self(), ctx.Parent(), kind, depth)
				if a, ok := ctx.Actor().(MailboxAware); ok {
					a.SetMailbox(depth)
				}
			case *actor.Restarting:
				r.restarting(ctx.Self())
			case *actor.Stopped:
				defer r.stopped(ctx.Self())
			}
			depth.busy.Add(1)
			handled := false
			defer func() {
				depth.busy.Add(-1)
				if handled {
					return
				}
				// The handler panicked: the mailbox skips MessageReceived
				// for the message, so take it off the depth here.
				depth.depth.Add(-1)
				if p := recover(); p != nil {
					f, ok := p.(*Failure)
					if !ok {
						f = &Failure{Value: p, Stack: debug.Stack(), MessageType: fmt.Sprintf("%T", env.Message)}
					}
					r.failed(ctx.Self(), f)
					panic(f)
				}
			}()
			next(ctx, env)
			handled = true
		}
	}
	all := []actor.PropsOption{
		actor.WithMailbox(actor.Unbounded(depth)),
		actor.WithReceiverMiddleware(track),
	}
	if r.dispatcher != nil {
		all = append(all, actor.WithDispatcher(r.dispatcher))
	}
	all = append(all, opts...)
	return actor.PropsFromProducer(producer, all...)
}

func (r *Registry) started(self, parent *actor.PID, kind string, depth *mailboxDepth) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.actors[self.Id]; ok && !a.stopped {
		return // a restart: keep the counters
	}
	a := &liveActor{id: self.Id, kind: kind, mailbox: depth}
	if parent != nil {
		a.parent = parent.Id
	}
	r.actors[self.Id] = a
}

func (r *Registry) restarting(self *actor.PID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.actors[self.Id]; ok {
		a.restarts.Add(1)
		a.crashed = false
	}
}

// failed records a crash of self.
func (r *Registry) failed(self *actor.PID, f *Failure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.actors[self.Id]; ok {
		a.failures++
		a.crashed = true
		a.failure = &messages.ActorFailure{
			Reason:      f.Error(),
			MessageType: f.MessageType,
			AtUnixMs:    time.Now().UnixMilli(),
			Count:       a.failures,
		}
	}
}

// stopped removes an actor that stopped, unless its supervisor stopped it
// after a crash: that one stays, marked stopped, so the tree shows why a
// part of the node is gone.
func (r *Registry) stopped(self *actor.PID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.actors[self.Id]
	if !ok || !a.crashed {
		delete(r.actors, self.Id)
		return
	}
	a.stopped = true
	a.mailbox = &mailboxDepth{}
	// Keep the most recent few: a node whose client sessions crash now
	// and then must not grow its tree without bound.
	var oldest *liveActor
	kept := 0
	for _, b := range r.actors {
		if !b.stopped {
			continue
		}
		kept++
		if oldest == nil || b.failure.GetAtUnixMs() < oldest.failure.GetAtUnixMs() {
			oldest = b
		}
	}
	if kept > maxStoppedShown {
		delete(r.actors, oldest.id)
	}
}

// maxStoppedShown bounds the actors kept in the tree after their
// supervisor stopped them.
const maxStoppedShown = 16

// Restarts returns how often the actor with the given PID id was restarted,
// and whether it is live.
func (r *Registry) Restarts(id string) (uint32, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.actors[id]
	if !ok {
		return 0, false
	}
	return a.restarts.Load(), true
}

// Snapshot returns the live actors as a forest: actors whose supervisor is
// not in the registry are roots. Siblings are sorted by id.
func (r *Registry) Snapshot() []*messages.ActorInfo {
	r.mu.Lock()
	infos := make(map[string]*messages.ActorInfo, len(r.actors))
	parents := make(map[string]string, len(r.actors))
	for id, a := range r.actors {
		infos[id] = &messages.ActorInfo{
			Id:          id,
			Kind:        a.kind,
			Restarts:    a.restarts.Load(),
			Mailbox:     a.mailbox.waiting(),
			LastFailure: a.failure,
			Stopped:     a.stopped,
		}
		parents[id] = a.parent
	}
	r.mu.Unlock()

	var roots []*messages.ActorInfo
	for id, info := range infos {
		if parent, ok := infos[parents[id]]; ok {
			parent.Children = append(parent.Children, info)
		} else {
			roots = append(roots, info)
		}
	}
	sortForest(roots)
	return roots
}

func sortForest(nodes []*messages.ActorInfo) {
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Id < nodes[j].Id })
	for _, n := range nodes {
		sortForest(n.Children)
	}
}

// Mailbox is what an actor can learn about its own mailbox.
type Mailbox interface {
	// Waiting is the number of user messages queued behind the one being
	// handled. A message posted concurrently may or may not be counted.
	Waiting() int64
}

// MailboxAware is implemented by actors that want to know their mailbox,
// say to send batched output when nothing else is waiting. Props made by
// Registry.Props give it to the actor before it handles Started (after
// every restart too).
type MailboxAware interface {
	SetMailbox(Mailbox)
}

// mailboxDepth counts messages posted to a mailbox and not yet processed;
// busy is 1 while the actor handles a message, which the mailbox counts
// until the handler returns.
type mailboxDepth struct {
	depth atomic.Int64
	busy  atomic.Int64
}

// waiting is the number of messages queued behind the one in progress.
func (m *mailboxDepth) waiting() int64 {
	return max(0, m.depth.Load()-m.busy.Load())
}

// Waiting implements Mailbox.
func (m *mailboxDepth) Waiting() int64 { return m.waiting() }

func (m *mailboxDepth) MailboxStarted()             {}
func (m *mailboxDepth) MessagePosted(interface{})   { m.depth.Add(1) }
func (m *mailboxDepth) MessageReceived(interface{}) { m.depth.Add(-1) }
func (m *mailboxDepth) MailboxEmpty()               {}

// Collector exports the registry as Prometheus metrics, aggregated by actor
// kind so that per-connection actors do not explode label cardinality.
type Collector struct {
	registry *Registry
	actors   *prometheus.Desc
	mailbox  *prometheus.Desc
	maxDepth *prometheus.Desc
	restarts *prometheus.Desc
}

// NewCollector returns a collector for the registry.
func NewCollector(r *Registry) *Collector {
	return &Collector{
		registry: r,
		actors: prometheus.NewDesc("tolerex_actors",
			"Live actors by kind.", []string{"kind"}, nil),
		mailbox: prometheus.NewDesc("tolerex_actor_mailbox_depth",
			"Messages waiting in the mailboxes of all actors of a kind.", []string{"kind"}, nil),
		maxDepth: prometheus.NewDesc("tolerex_actor_mailbox_depth_max",
			"Deepest mailbox among the actors of a kind.", []string{"kind"}, nil),
		restarts: prometheus.NewDesc("tolerex_actor_restarts",
			"Restarts of the live actors of a kind since the node started.", []string{"kind"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.actors
	ch <- c.mailbox
	ch <- c.maxDepth
	ch <- c.restarts
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	type agg struct{ count, depth, maxDepth, restarts int64 }
	byKind := make(map[string]*agg)
	c.registry.mu.Lock()
	for _, a := range c.registry.actors {
		if a.stopped {
			continue
		}
		g := byKind[a.kind]
		if g == nil {
			g = &agg{}
			byKind[a.kind] = g
		}
		d := a.mailbox.waiting()
		g.count++
		g.depth += d
		g.maxDepth = max(g.maxDepth, d)
		g.restarts += int64(a.restarts.Load())
	}
	c.registry.mu.Unlock()
	for kind, g := range byKind {
		ch <- prometheus.MustNewConstMetric(c.actors, prometheus.GaugeValue, float64(g.count), kind)
		ch <- prometheus.MustNewConstMetric(c.mailbox, prometheus.GaugeValue, float64(g.depth), kind)
		ch <- prometheus.MustNewConstMetric(c.maxDepth, prometheus.GaugeValue, float64(g.maxDepth), kind)
		ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.GaugeValue, float64(g.restarts), kind)
	}
}
