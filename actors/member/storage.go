package member

import (
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/messages"
	"github.com/tolerex/tolerex/storage"
)

// StorageConfig configures the storage actor.
type StorageConfig struct {
	Dir  string
	Sync bool
	// Metrics may be nil.
	Metrics *StorageMetrics
}

// InjectPanic makes the storage actor panic; members started with
// --fault-injection send it on POST /debug/fault/storage-panic.
type InjectPanic struct{}

// NewStorage returns the producer of the storage actor. It opens the store
// when it starts and closes it when it stops or is restarted, so a restart
// reopens the store from disk.
//
// A store that fails to open is handled by its cause. If it is corrupt
// (storage.ErrCorruptStore) the actor logs it once, marks the member's
// Status corrupt (the member is then not ready and reports its storage
// not ready to the gateway, which stops using it) and stays up without a
// store, answering every request with an error: reopening would fail the
// same way, so crashing would only restart it in a loop. Any other failure
// (a held lock, permissions) crashes the actor, and the member supervisor
// retries with backoff. A store that closes itself because a compaction hit
// damaged data is handled like one that cannot be opened.
//
// A read that finds its record damaged is answered READ_CORRUPT, counted in
// Status.CorruptReads and recorded as Status.LastCorruption; the gateway
// then reads another replica. The member goes on serving every other key:
// damage found by reads is local to the records (blocks) it hits.
func NewStorage(cfg StorageConfig, status *Status, log zerolog.Logger) actor.Producer {
	return func() actor.Actor {
		return &storageActor{cfg: cfg, status: status, log: log.With().Str("actor", messages.StorageActor).Logger()}
	}
}

type storageActor struct {
	cfg    StorageConfig
	status *Status
	log    zerolog.Logger
	store  *storage.Store
	// generation numbers the stores this actor opened, so a late report
	// about an earlier store is ignored.
	generation uint64
}

// storeCorrupted reports that store number generation closed itself
// because a background compaction hit damaged data.
type storeCorrupted struct {
	generation uint64
	err        error
}

// pendingStore is the token of a submitted put: who to acknowledge.
type pendingStore struct {
	sender    *actor.PID
	requestID uint64
	submitted time.Time
	id        int64
	version   uint64
	size      uint32
}

// committed carries a group commit's results back into the actor.
type committed struct {
	results []storage.Result
	at      time.Time
}

func (a *storageActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.open(ctx)
	case *actor.Stopping, *actor.Restarting:
		a.close()
	case *messages.StoreBatch:
		for _, req := range msg.GetRequests() {
			a.storeRequest(ctx, req)
		}
	case *messages.ReadBatch:
		replies := make([]*messages.ReadReply, len(msg.GetRequests()))
		for i, req := range msg.GetRequests() {
			replies[i] = a.read(req)
		}
		ctx.Respond(&messages.ReadReplyBatch{Replies: replies})
	case *messages.PruneBatch:
		for _, req := range msg.GetRequests() {
			a.prune(req)
		}
	case *committed:
		a.acknowledge(ctx, msg)
	case *storeCorrupted:
		if msg.generation == a.generation && a.store != nil {
			a.close()
			a.markCorrupt(msg.err)
		}
	case InjectPanic, *InjectPanic:
		a.log.Warn().Msg("fault injection: storage actor panics now")
		panic("injected storage fault")
	}
}

func (a *storageActor) open(ctx actor.Context) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.generation++
	generation := a.generation
	store, err := storage.Open(a.cfg.Dir, storage.Options{
		Sync:   a.cfg.Sync,
		Logger: a.log,
		OnCommit: func(results []storage.Result) {
			root.Send(self, &committed{results: results, at: time.Now()})
		},
		OnCorruptStore: func(err error) {
			root.Send(self, &storeCorrupted{generation: generation, err: err})
		},
	})
	switch {
	case errors.Is(err, storage.ErrCorruptStore):
		a.markCorrupt(err)
		return
	case err != nil:
		// Let it crash: the member supervisor retries with backoff.
		panic(fmt.Errorf("open store: %w", err))
	}
	a.store = store
	a.status.SetStoreCorrupt(nil)
	a.publishStats()
	a.status.StorageReady.Store(true)
	a.log.Info().Str("dir", a.cfg.Dir).Bool("sync", a.cfg.Sync).Uint64("messages", a.status.Messages.Load()).Msg("store open")
	if damage := store.Damage(); damage != nil {
		a.status.RecordCorruption(damage)
		a.log.Error().Err(damage).Str("dir", a.cfg.Dir).
			Msg("store opened with damaged records: reads of them are refused and served by other replicas")
	}
}

// markCorrupt leaves the actor without a store because the store is
// corrupt, and says so once.
func (a *storageActor) markCorrupt(err error) {
	a.status.StorageReady.Store(false)
	a.status.SetStoreCorrupt(err)
	a.log.Error().Err(err).Str("dir", a.cfg.Dir).
		Msg("store is corrupt: this member serves no data until its store directory is repaired or removed (the other replicas serve its messages)")
}

// unavailable says why there is no store to serve a request.
func (a *storageActor) unavailable() string {
	if reason := a.status.StoreCorrupt(); reason != "" {
		return "store is corrupt: " + reason
	}
	return "store is not open"
}

func (a *storageActor) close() {
	a.status.StorageReady.Store(false)
	if a.store == nil {
		return
	}
	if err := a.store.Close(); err != nil {
		a.log.Error().Err(err).Msg("close store")
	}
	a.store = nil
}

func (a *storageActor) prune(msg *messages.PruneRequest) {
	if a.store != nil && msg.GetVersion() != 0 {
		a.store.Submit(storage.Op{Kind: storage.OpDelete, ID: msg.GetId(), Version: msg.GetVersion(), Size: msg.GetSize()})
	}
}

func (a *storageActor) storeRequest(ctx actor.Context, msg *messages.StoreRequest) {
	if a.store == nil {
		if sender := ctx.Sender(); sender != nil {
			ctx.Request(sender, &messages.StoreAckBatch{Acks: []*messages.StoreAck{{RequestId: msg.GetRequestId(), Error: a.unavailable(),
				Id: msg.GetId(), Version: msg.GetVersion(), Size: uint32(len(msg.GetPayload()))}}})
		}
		return
	}
	a.store.Submit(storage.Op{
		Kind:    storage.OpPut,
		ID:      msg.GetId(),
		Version: msg.GetVersion(),
		Payload: msg.GetPayload(),
		Token: &pendingStore{sender: ctx.Sender(), requestID: msg.GetRequestId(), submitted: time.Now(),
			id: msg.GetId(), version: msg.GetVersion(), size: uint32(len(msg.GetPayload()))},
	})
}

// acknowledge answers the stores of a group commit: one StoreAckBatch per
// leader that asked.
func (a *storageActor) acknowledge(ctx actor.Context, msg *committed) {
	m := a.cfg.Metrics
	if m != nil {
		m.BatchOps.Observe(float64(len(msg.results)))
	}
	type ackGroup struct {
		to   *actor.PID
		acks *messages.StoreAckBatch
	}
	var groups []ackGroup
	for _, r := range msg.results {
		p, ok := r.Token.(*pendingStore)
		if !ok || p.sender == nil {
			continue // a prune: nobody waits for it
		}
		ack := &messages.StoreAck{RequestId: p.requestID, Id: p.id, Version: p.version, Size: p.size}
		if r.Err != nil {
			ack.Error = r.Err.Error()
		}
		if m != nil {
			m.PutSeconds.Observe(msg.at.Sub(p.submitted).Seconds())
		}
		i := 0
		for i < len(groups) && !groups[i].to.Equal(p.sender) {
			i++
		}
		if i == len(groups) {
			groups = append(groups, ackGroup{to: p.sender, acks: &messages.StoreAckBatch{}})
		}
		groups[i].acks.Acks = append(groups[i].acks.Acks, ack)
	}
	for _, g := range groups {
		ctx.Request(g.to, g.acks) // the sender tells the leader which member answered
	}
	a.publishStats()
}

func (a *storageActor) read(msg *messages.ReadRequest) *messages.ReadReply {
	reply := &messages.ReadReply{RequestId: msg.GetRequestId()}
	if a.store == nil {
		reply.Status, reply.Error = messages.ReadStatus_READ_FAILED, a.unavailable()
		return reply
	}
	payload, err := a.store.Get(msg.GetId(), msg.GetVersion())
	switch {
	case err == nil:
		reply.Status, reply.Payload = messages.ReadStatus_READ_OK, payload
	case errors.Is(err, storage.ErrNotFound):
		reply.Status = messages.ReadStatus_READ_MISSING
	case errors.Is(err, storage.ErrCorrupt):
		reply.Status, reply.Error = messages.ReadStatus_READ_CORRUPT, err.Error()
		a.log.Error().Err(err).Int64("id", msg.GetId()).Uint64("version", msg.GetVersion()).Msg("corrupt record")
		a.status.CorruptReads.Add(1)
		a.status.RecordCorruption(err)
	default:
		reply.Status, reply.Error = messages.ReadStatus_READ_FAILED, err.Error()
		a.log.Error().Err(err).Int64("id", msg.GetId()).Msg("read failed")
	}
	return reply
}

func (a *storageActor) publishStats() {
	st := a.store.Stats()
	a.status.Messages.Store(st.Messages)
	a.status.Bytes.Store(st.Bytes)
}
