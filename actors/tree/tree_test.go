package tree_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tolerex/tolerex/actors/actortest"
	"github.com/tolerex/tolerex/actors/tree"
	"github.com/tolerex/tolerex/cluster/local/poll"
	"github.com/tolerex/tolerex/messages"
)

// waitTimeout bounds every wait so a lost signal fails the test instead of
// hanging it.
const waitTimeout = 10 * time.Second

// The messages a testActor understands.
type (
	// crash makes the actor panic.
	crash struct{}
	// block makes the actor report on entered and wait until release is
	// closed.
	block struct{}
	// work is reported on processed.
	work struct{}
)

// child describes an actor that a testActor spawns when it starts.
type child struct {
	name, kind string
	children   []child
}

// signals are the channels shared by all test actors of one test and all
// their incarnations.
type signals struct {
	started   chan string // the PID id, on every Started
	entered   chan struct{}
	release   chan struct{}
	processed chan struct{}
}

func newSignals() *signals {
	return &signals{
		started:   make(chan string, 100),
		entered:   make(chan struct{}, 100),
		release:   make(chan struct{}),
		processed: make(chan struct{}, 100),
	}
}

// testActor spawns its children from registry props when it starts and
// reports what it does on its signals.
type testActor struct {
	registry *tree.Registry
	children []child
	sig      *signals
}

func (s *signals) producer(registry *tree.Registry, children ...child) actor.Producer {
	return func() actor.Actor { return &testActor{registry: registry, children: children, sig: s} }
}

func (a *testActor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		for _, c := range a.children {
			props := a.registry.Props(c.kind, a.sig.producer(a.registry, c.children...))
			if _, err := ctx.SpawnNamed(props, c.name); err != nil {
				panic(fmt.Sprintf("spawn %s: %v", c.name, err))
			}
		}
		a.sig.started <- ctx.Self().Id
	case crash:
		panic("crash requested by the test")
	case block:
		a.sig.entered <- struct{}{}
		<-a.sig.release
	case work:
		a.sig.processed <- struct{}{}
	}
}

func spawnNamed(t *testing.T, system *actor.ActorSystem, props *actor.Props, name string) *actor.PID {
	t.Helper()
	pid, err := system.Root.SpawnNamed(props, name)
	if err != nil {
		t.Fatalf("spawn %s: %v", name, err)
	}
	return pid
}

func stop(t *testing.T, system *actor.ActorSystem, pid *actor.PID) {
	t.Helper()
	if err := system.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatalf("stop %s: %v", pid.Id, err)
	}
}

// await receives n values from ch or fails the test.
func await[T any](t *testing.T, ch <-chan T, n int, what string) []T {
	t.Helper()
	got := make([]T, 0, n)
	timeout := time.After(waitTimeout)
	for len(got) < n {
		select {
		case v := <-ch:
			got = append(got, v)
		case <-timeout:
			t.Fatalf("waiting for %s: got %d of %d", what, len(got), n)
		}
	}
	return got
}

// eventually polls cond until it holds, or fails the test with the last
// description cond gave.
func eventually(t *testing.T, cond func() (bool, string)) {
	t.Helper()
	poll.Eventually(t, waitTimeout, 5*time.Millisecond, "the tree to reach the expected state", cond)
}

// shape writes a forest as "id(kind)[children]" with siblings separated by
// spaces.
func shape(infos []*messages.ActorInfo) string {
	parts := make([]string, 0, len(infos))
	for _, a := range infos {
		s := fmt.Sprintf("%s(%s)", a.GetId(), a.GetKind())
		if len(a.GetChildren()) > 0 {
			s += "[" + shape(a.GetChildren()) + "]"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// find returns the actor with the given id in a forest, or nil.
func find(infos []*messages.ActorInfo, id string) *messages.ActorInfo {
	for _, a := range infos {
		if a.GetId() == id {
			return a
		}
		if found := find(a.GetChildren(), id); found != nil {
			return found
		}
	}
	return nil
}

// counters sums restarts and mailbox depths over a forest.
func counters(infos []*messages.ActorInfo) (restarts uint32, mailbox int64) {
	for _, a := range infos {
		r, m := counters(a.GetChildren())
		restarts += a.GetRestarts() + r
		mailbox += a.GetMailbox() + m
	}
	return restarts, mailbox
}

// bossFamily is boss with two workers, the first of which has a helper.
var bossFamily = []child{
	{name: "w2", kind: "worker"},
	{name: "w1", kind: "worker", children: []child{{name: "g", kind: "helper"}}},
}

func TestSnapshotShowsTheSupervisionTree(t *testing.T) {
	system := actortest.QuietSystem(t)
	registry := tree.NewRegistry(nil)
	sig := newSignals()

	spawnNamed(t, system, registry.Props("boss", sig.producer(registry, bossFamily...)), "boss")
	spawnNamed(t, system, registry.Props("lonely", sig.producer(registry)), "alpha")
	// An actor that is not in the registry: its registered child is a root.
	spawnNamed(t, system, actor.PropsFromProducer(sig.producer(registry, child{name: "orphan", kind: "orphan"})), "plain")
	await(t, sig.started, 7, "7 actors to start")

	const want = "alpha(lonely) boss(boss)[boss/w1(worker)[boss/w1/g(helper)] boss/w2(worker)] plain/orphan(orphan)"
	if got := shape(registry.Snapshot()); got != want {
		t.Fatalf("Snapshot =\n%s\nwant\n%s", got, want)
	}
	eventually(t, func() (bool, string) {
		restarts, mailbox := counters(registry.Snapshot())
		return restarts == 0 && mailbox == 0, fmt.Sprintf("restarts %d, mailbox %d; want 0 and 0", restarts, mailbox)
	})
	for _, id := range []string{"boss", "boss/w1", "boss/w1/g", "boss/w2", "alpha", "plain/orphan"} {
		if n, ok := registry.Restarts(id); !ok || n != 0 {
			t.Errorf("Restarts(%s) = %d %v, want 0 true", id, n, ok)
		}
	}
	if _, ok := registry.Restarts("plain"); ok {
		t.Error("Restarts(plain) found an actor spawned without registry props")
	}

	// The view sent to the dashboard carries the same tree.
	view := tree.ViewOf(registry.Local("127.0.0.1:7000", "member", "m1"))
	if view.NodeAddress != "127.0.0.1:7000" || view.Role != "member" || view.MemberID != "m1" || !view.Reachable || view.Error != "" {
		t.Errorf("ViewOf = %+v", view)
	}
	if len(view.Actors) != 3 || view.Actors[1].ID != "boss" || len(view.Actors[1].Children) != 2 ||
		view.Actors[1].Children[0].Children[0].ID != "boss/w1/g" || view.Actors[1].Children[0].Children[0].Kind != "helper" {
		t.Errorf("ViewOf actors = %+v", view.Actors)
	}
	raw, err := json.Marshal(view.Actors[0])
	if err != nil {
		t.Fatalf("marshal view: %v", err)
	}
	if got, want := string(raw), `{"id":"alpha","kind":"lonely","restarts":0,"mailbox":0}`; got != want {
		t.Errorf("JSON of a leaf = %s, want %s", got, want)
	}
}

func TestStoppedActorsDisappear(t *testing.T) {
	system := actortest.QuietSystem(t)
	registry := tree.NewRegistry(nil)
	sig := newSignals()
	boss := spawnNamed(t, system, registry.Props("boss", sig.producer(registry, bossFamily...)), "boss")
	await(t, sig.started, 4, "4 actors to start")

	stop(t, system, system.NewLocalPID("boss/w1"))
	if got, want := shape(registry.Snapshot()), "boss(boss)[boss/w2(worker)]"; got != want {
		t.Errorf("Snapshot after stopping boss/w1 = %s, want %s", got, want)
	}
	for _, id := range []string{"boss/w1", "boss/w1/g"} {
		if _, ok := registry.Restarts(id); ok {
			t.Errorf("Restarts(%s) found a stopped actor", id)
		}
	}

	stop(t, system, boss)
	if got := registry.Snapshot(); len(got) != 0 {
		t.Errorf("Snapshot after stopping boss = %s, want empty", shape(got))
	}
}

func TestRestartsAreCounted(t *testing.T) {
	system := actortest.QuietSystem(t)
	registry := tree.NewRegistry(nil)
	sig := newSignals()
	spawnNamed(t, system, registry.Props("supervisor", sig.producer(registry, child{name: "crashy", kind: "crashy"})), "sup")
	await(t, sig.started, 2, "sup and sup/crashy to start")
	crashy := system.NewLocalPID("sup/crashy")

	for want := uint32(1); want <= 2; want++ {
		system.Root.Send(crashy, crash{})
		if got := await(t, sig.started, 1, "sup/crashy to restart"); got[0] != "sup/crashy" {
			t.Fatalf("%s started, want sup/crashy", got[0])
		}
		if n, ok := registry.Restarts("sup/crashy"); !ok || n != want {
			t.Errorf("Restarts(sup/crashy) = %d %v, want %d true", n, ok, want)
		}
		if n, _ := registry.Restarts("sup"); n != 0 {
			t.Errorf("Restarts(sup) = %d, want 0", n)
		}
		snap := registry.Snapshot()
		if got, want := shape(snap), "sup(supervisor)[sup/crashy(crashy)]"; got != want {
			t.Fatalf("Snapshot = %s, want %s", got, want)
		}
		if got := find(snap, "sup/crashy").GetRestarts(); got != want {
			t.Errorf("Snapshot restarts of sup/crashy = %d, want %d", got, want)
		}
		if f := find(snap, "sup/crashy").GetLastFailure(); f.GetCount() != want || f.GetReason() != "crash requested by the test" {
			t.Errorf("last failure of sup/crashy = %v, want crash number %d", f, want)
		}
		// The message that crashed the actor is gone: it must not stay
		// counted in the mailbox.
		eventually(t, func() (bool, string) {
			depth := find(registry.Snapshot(), "sup/crashy").GetMailbox()
			return depth == 0, fmt.Sprintf("mailbox of sup/crashy = %d after %d restarts, want 0", depth, want)
		})
	}

	// The restarted actor still works.
	system.Root.Send(crashy, work{})
	await(t, sig.processed, 1, "the restarted actor to process a message")
}

// gather collects the registry's metrics as "name{kind}" -> value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	out := make(map[string]float64)
	for _, family := range families {
		for _, m := range family.GetMetric() {
			kind := ""
			for _, label := range m.GetLabel() {
				if label.GetName() == "kind" {
					kind = label.GetValue()
				}
			}
			out[fmt.Sprintf("%s{%s}", family.GetName(), kind)] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestMailboxDepthAndCollector(t *testing.T) {
	system := actortest.QuietSystem(t)
	registry := tree.NewRegistry(nil)
	metrics := prometheus.NewPedanticRegistry()
	metrics.MustRegister(tree.NewCollector(registry))
	if got := gather(t, metrics); len(got) != 0 {
		t.Errorf("metrics of an empty registry = %v, want none", got)
	}

	sig := newSignals()
	slow := spawnNamed(t, system, registry.Props("slow", sig.producer(registry)), "slow")
	spawnNamed(t, system, registry.Props("idle", sig.producer(registry)), "idle1")
	spawnNamed(t, system, registry.Props("idle", sig.producer(registry)), "idle2")
	await(t, sig.started, 3, "3 actors to start")
	released := false
	defer func() {
		if !released {
			close(sig.release) // do not leave the actor blocked if the test fails
		}
	}()

	system.Root.Send(slow, block{})
	await(t, sig.entered, 1, "slow to block")
	for range 10 {
		system.Root.Send(slow, work{})
	}
	// Posting is synchronous: the ten messages are queued now; the one being
	// processed is not counted.
	if got := find(registry.Snapshot(), "slow").GetMailbox(); got != 10 {
		t.Errorf("mailbox of the blocked actor = %d, want 10", got)
	}
	want := map[string]float64{
		"tolerex_actors{slow}":                  1,
		"tolerex_actors{idle}":                  2,
		"tolerex_actor_mailbox_depth{slow}":     10,
		"tolerex_actor_mailbox_depth{idle}":     0,
		"tolerex_actor_mailbox_depth_max{slow}": 10,
		"tolerex_actor_mailbox_depth_max{idle}": 0,
		"tolerex_actor_restarts{slow}":          0,
		"tolerex_actor_restarts{idle}":          0,
	}
	eventually(t, func() (bool, string) {
		got := gather(t, metrics)
		return maps.Equal(got, want), fmt.Sprintf("metrics %v, want %v", got, want)
	})

	close(sig.release)
	released = true
	await(t, sig.processed, 10, "slow to process 10 messages")
	eventually(t, func() (bool, string) {
		depth := find(registry.Snapshot(), "slow").GetMailbox()
		return depth == 0, fmt.Sprintf("mailbox of the drained actor = %d, want 0", depth)
	})
	want["tolerex_actor_mailbox_depth{slow}"] = 0
	want["tolerex_actor_mailbox_depth_max{slow}"] = 0
	eventually(t, func() (bool, string) {
		got := gather(t, metrics)
		return maps.Equal(got, want), fmt.Sprintf("metrics %v, want %v", got, want)
	})

	// Restarts are summed per kind, stopped actors leave the metrics.
	system.Root.Send(system.NewLocalPID("idle1"), crash{})
	system.Root.Send(system.NewLocalPID("idle2"), crash{})
	await(t, sig.started, 2, "idle1 and idle2 to restart")
	stop(t, system, slow)
	want = map[string]float64{
		"tolerex_actors{idle}":                  2,
		"tolerex_actor_mailbox_depth{idle}":     0,
		"tolerex_actor_mailbox_depth_max{idle}": 0,
		"tolerex_actor_restarts{idle}":          2,
	}
	eventually(t, func() (bool, string) {
		got := gather(t, metrics)
		return maps.Equal(got, want), fmt.Sprintf("metrics %v, want %v", got, want)
	})
}

// awareActor records, for every int it handles, how many messages its
// mailbox says wait behind it; a string blocks it until release closes.
type awareActor struct {
	mailbox tree.Mailbox
	entered chan struct{}
	release chan struct{}
	waiting chan int64
}

func (a *awareActor) SetMailbox(m tree.Mailbox) { a.mailbox = m }

func (a *awareActor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case string:
		a.entered <- struct{}{}
		<-a.release
	case int:
		a.waiting <- a.mailbox.Waiting()
	}
}

// TestMailboxAware checks that an actor learns its mailbox and that
// Waiting counts the messages queued behind the current one.
func TestMailboxAware(t *testing.T) {
	system := actortest.QuietSystem(t)
	reg := tree.NewRegistry(nil)
	a := &awareActor{entered: make(chan struct{}), release: make(chan struct{}), waiting: make(chan int64, 3)}
	pid := system.Root.Spawn(reg.Props("aware", func() actor.Actor { return a }))
	system.Root.Send(pid, "block")
	select {
	case <-a.entered:
	case <-time.After(waitTimeout):
		t.Fatal("actor never handled the blocking message")
	}
	for i := range 3 {
		system.Root.Send(pid, i)
	}
	close(a.release)
	var got []int64
	for range 3 {
		select {
		case w := <-a.waiting:
			got = append(got, w)
		case <-time.After(waitTimeout):
			t.Fatalf("only %d of 3 messages handled", len(got))
		}
	}
	if want := []int64{2, 1, 0}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Waiting() while handling 3 queued messages = %v, want %v", got, want)
	}
}

// stopOnFailure is a supervisor strategy that hands the failure reason to
// the test and stops the child.
type stopOnFailure struct{ reasons chan any }

func (s stopOnFailure) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason interface{}, _ interface{}) {
	s.reasons <- reason
	sup.StopChildren(child)
}

func TestCrashesAreRecordedWithTheirStack(t *testing.T) {
	system := actortest.QuietSystem(t)
	registry := tree.NewRegistry(nil)
	sig := newSignals()
	strategy := stopOnFailure{reasons: make(chan any, 1)}
	spawnNamed(t, system, registry.Props("supervisor", sig.producer(registry, child{name: "crashy", kind: "crashy"}),
		actor.WithSupervisor(strategy)), "sup")
	await(t, sig.started, 2, "sup and sup/crashy to start")
	system.Root.Send(system.NewLocalPID("sup/crashy"), crash{})

	reason := await(t, strategy.reasons, 1, "the supervisor to see the crash")[0]
	f, ok := reason.(*tree.Failure)
	if !ok {
		t.Fatalf("supervisor got %T (%v), want *tree.Failure", reason, reason)
	}
	if f.Error() != "crash requested by the test" || f.MessageType != "tree_test.crash" {
		t.Errorf("failure = %q on %s, want the panic value on tree_test.crash", f.Error(), f.MessageType)
	}
	if !strings.Contains(string(f.Stack), "(*testActor).Receive") {
		t.Errorf("failure stack does not show where it panicked:\n%s", f.Stack)
	}
	if text, stack := tree.Reason(reason); text != f.Error() || stack != string(f.Stack) {
		t.Errorf("Reason = %q, %d-byte stack; want the failure's", text, len(stack))
	}
	if text, stack := tree.Reason("plain"); text != "plain" || stack != "" {
		t.Errorf("Reason(plain) = %q, %q", text, stack)
	}

	// Stopped after the crash: it stays in the tree, marked, with its
	// failure; an actor stopped normally goes (TestStoppedActorsDisappear).
	eventually(t, func() (bool, string) {
		a := find(registry.Snapshot(), "sup/crashy")
		return a.GetStopped(), fmt.Sprintf("sup/crashy in the tree: %v", a)
	})
	lf := find(registry.Snapshot(), "sup/crashy").GetLastFailure()
	if lf.GetReason() != "crash requested by the test" || lf.GetCount() != 1 || lf.GetMessageType() != "tree_test.crash" {
		t.Errorf("last failure = %v", lf)
	}
	view := tree.ViewOf(registry.Local("node", "gateway", ""))
	if len(view.Actors) != 1 || len(view.Actors[0].Children) != 1 {
		t.Fatalf("view = %+v, want sup with one child", view.Actors)
	}
	if c := view.Actors[0].Children[0]; !c.Stopped || c.LastFailure == nil || c.LastFailure.Reason != "crash requested by the test" {
		t.Errorf("view of sup/crashy = %+v, want it stopped with its failure", c)
	}
}
