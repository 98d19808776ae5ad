package member

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/actors/ticker"
	"github.com/tolerex/tolerex/messages"
	"github.com/tolerex/tolerex/storage"
	"github.com/tolerex/tolerex/storage/diskspace"
)

// StorageConfig configures the storage actor.
type StorageConfig struct {
	Dir  string
	Sync bool
	// MinFreeBytes is the free-space watermark: while the store's
	// filesystem has less free, the member refuses writes (and takes them
	// again at a quarter more, see diskspace.NewWatermark). 0 never
	// refuses.
	MinFreeBytes uint64
	// SpaceCheckInterval is how often the free space is checked besides
	// before every group commit of writes, so that freed space is noticed;
	// 0 means DefaultSpaceCheckInterval.
	SpaceCheckInterval time.Duration
	// Statfs reports the store's filesystem usage; nil means
	// diskspace.Statfs. Tests inject a fake disk.
	Statfs diskspace.StatFunc
	// Metrics may be nil.
	Metrics *StorageMetrics
}

// DefaultSpaceCheckInterval is how often the storage actor checks the free
// space when nothing else does.
const DefaultSpaceCheckInterval = time.Second

// InjectPanic makes the storage actor panic; members started with
// --fault-injection send it on POST /debug/fault/storage-panic.
type InjectPanic struct{}

// InjectDropAcks makes the storage actor store as usual but drop the next
// Count acknowledgement messages it would send (each answers the stores of
// one group commit from one leader), as a connection torn down under them
// would; members started with --fault-injection send it on POST
// /debug/fault/drop-store-acks. A restart of the actor forgets it.
type InjectDropAcks struct{ Count int }

// InjectDropReadReplies makes the storage actor serve reads as usual but
// drop the next Count read answer messages (each answers one batch of
// reads from one leader), as a connection torn down under them would;
// members started with --fault-injection send it on POST
// /debug/fault/drop-read-replies. A restart of the actor forgets it.
type InjectDropReadReplies struct{ Count int }

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
//
// A nearly full disk makes the member refuse writes, never crash: while the
// free space is under cfg.MinFreeBytes, store requests are answered with a
// "disk full: ..." error (the gateway places the copy elsewhere; the
// heartbeat tells it to stop choosing this member), prunes are still
// applied, reads are served, Status says why, and the log says so once,
// and once again when writes are taken again. A store opened on such a
// disk is opened read-only (Pebble could not open it read-write: it would
// wait forever for the flush of its write-ahead log) and is reopened
// read-write once space is freed; a disk that fills up under the store
// anyway (something else writing to it) makes the store close itself on
// the first failed commit, and the actor reopens it the same way.
func NewStorage(cfg StorageConfig, status *Status, log zerolog.Logger) actor.Producer {
	log = log.With().Str("actor", messages.StorageActor).Logger()
	if cfg.SpaceCheckInterval <= 0 {
		cfg.SpaceCheckInterval = DefaultSpaceCheckInterval
	}
	// One guard for every incarnation of the actor, so a restart does not
	// report the disk's state as news.
	mark := diskspace.NewWatermark(cfg.MinFreeBytes)
	guard := diskspace.NewGuard(cfg.Dir, mark, cfg.Statfs, func(st diskspace.State, changed bool) {
		full := ""
		if st.Refusing {
			full = mark.FullError(st.Free).Error()
		}
		status.SetDisk(st.Free, st.Total, mark.MinFree, full)
		switch {
		case changed && st.Refusing:
			log.Error().Uint64("free_bytes", st.Free).Uint64("min_free_bytes", mark.MinFree).Uint64("resume_at_bytes", mark.ResumeFree).
				Msg("disk full: refusing writes, still serving reads; free space on the data dir's filesystem to take writes again")
		case changed:
			log.Info().Uint64("free_bytes", st.Free).Uint64("min_free_bytes", mark.MinFree).
				Msg("disk has room again: taking writes")
		}
	})
	return func() actor.Actor {
		return &storageActor{cfg: cfg, status: status, log: log, guard: guard}
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
	guard      *diskspace.Guard
	stopChecks func()
	// fullAtOpen is set while the store is open read-only, or not open at
	// all, because the disk was nearly full: it is reopened read-write
	// once the guard takes writes again.
	fullAtOpen bool
	// wedged is the write failure that left the store unable to close (it
	// serves reads until the process restarts).
	wedged error
	// noSpace is the write failure that found the disk full (ENOSPC): the
	// store is reopened read-only whatever the watermark says, since a
	// read-write open would wait forever for a flush that cannot be
	// written; it is reopened read-write once the guard sees space again
	// (never, with the check turned off).
	noSpace error
	// dropAcks is how many more acknowledgement messages the actor drops
	// instead of sending (InjectDropAcks), dropReads how many more read
	// answers (InjectDropReadReplies).
	dropAcks, dropReads int
}

// spaceTick makes the actor check the free space.
type spaceTick struct{}

// storeWriteFailed reports that store number generation failed a commit
// after which it cannot be written again.
type storeWriteFailed struct {
	generation uint64
	err        error
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
		a.stopChecks = ticker.Every(ctx.ActorSystem().Root, a.cfg.SpaceCheckInterval, a.cfg.SpaceCheckInterval, ctx.Self(), spaceTick{})
	case *actor.Stopping, *actor.Restarting:
		if a.stopChecks != nil {
			a.stopChecks()
		}
		a.close()
	case spaceTick:
		a.checkSpace(ctx)
	case *messages.StoreBatch:
		a.storeBatch(ctx, msg)
	case *messages.ReadBatch:
		replies := make([]*messages.ReadReply, len(msg.GetRequests()))
		for i, req := range msg.GetRequests() {
			replies[i] = a.read(req)
		}
		if a.dropReads > 0 {
			a.dropReads--
			a.log.Warn().Int("replies", len(replies)).Int("left", a.dropReads).Msg("fault injection: dropping read answers")
			return
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
	case *storeWriteFailed:
		a.writeFailed(ctx, msg)
	case *InjectDropAcks:
		a.dropAcks = max(msg.Count, 0)
	case *InjectDropReadReplies:
		a.dropReads = max(msg.Count, 0)
	case InjectPanic, *InjectPanic:
		a.log.Warn().Msg("fault injection: storage actor panics now")
		panic("injected storage fault")
	}
}

// open opens the store: read-write, or read-only while the disk is
// nearly full.
func (a *storageActor) open(ctx actor.Context) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.generation++
	generation := a.generation
	readOnly := a.guard.Check().Refusing || a.noSpace != nil
	opts := storage.Options{
		Sync:     a.cfg.Sync,
		Logger:   a.log,
		Space:    a.guard,
		ReadOnly: readOnly,
		OnCommit: func(results []storage.Result) {
			root.Send(self, &committed{results: results, at: time.Now()})
		},
		OnCorruptStore: func(err error) {
			root.Send(self, &storeCorrupted{generation: generation, err: err})
		},
		OnWriteFailure: func(err error) {
			root.Send(self, &storeWriteFailed{generation: generation, err: err})
		},
	}
	store, err := storage.Open(a.cfg.Dir, opts)
	if err != nil && !readOnly && errors.Is(err, syscall.ENOSPC) {
		// Full after all (the free space went between the check and now).
		a.log.Warn().Err(err).Msg("the disk filled up while the store was opened; opening it read-only")
		readOnly, opts.ReadOnly = true, true
		store, err = storage.Open(a.cfg.Dir, opts)
	}
	a.fullAtOpen = readOnly
	switch {
	case readOnly && errors.Is(err, storage.ErrNoStore):
		a.log.Warn().Str("dir", a.cfg.Dir).
			Msg("disk full and no store yet: this member holds nothing; it creates its store once space is freed")
		return
	case errors.Is(err, storage.ErrCorruptStore):
		a.markCorrupt(err)
		return
	case err != nil:
		// Let it crash: the member supervisor retries with backoff.
		panic(fmt.Errorf("open store: %w", err))
	}
	a.store = store
	a.status.SetStoreCorrupt(nil)
	a.status.ReadOnly.Store(readOnly)
	a.publishStats()
	a.status.StorageReady.Store(true)
	if readOnly {
		a.log.Warn().Str("dir", a.cfg.Dir).Uint64("messages", a.status.Messages.Load()).
			Msg("store opened read-only: the disk is nearly full; serving reads, refusing writes until space is freed")
	} else {
		a.log.Info().Str("dir", a.cfg.Dir).Bool("sync", a.cfg.Sync).Uint64("messages", a.status.Messages.Load()).Msg("store open")
	}
	if damage := store.Damage(); damage != nil {
		a.status.RecordCorruption(damage)
		a.log.Error().Err(damage).Str("dir", a.cfg.Dir).
			Msg("store opened with damaged records: reads of them are refused and served by other replicas")
	}
}

// checkSpace checks the free space (so that the member notices space freed
// while nothing is written) and reopens read-write a store that was opened
// read-only, or not at all, because the disk was full.
func (a *storageActor) checkSpace(ctx actor.Context) {
	st := a.guard.Check()
	if st.Refusing || !a.fullAtOpen || a.status.StoreCorrupt() != "" || a.status.GaveUp.Load() {
		return
	}
	if a.noSpace != nil {
		if a.guard.Watermark().MinFree == 0 {
			return // nothing tells when space is back: read-only until a restart
		}
		a.noSpace = nil
	}
	a.log.Info().Uint64("free_bytes", st.Free).Msg("disk has room again: reopening the store read-write")
	a.close()
	a.open(ctx)
}

// writeFailed handles a store whose commit failed so that it cannot be
// written again (the disk filled up faster than the watermark check): it
// reopens the store, which is read-only while the disk is still full. A
// store that cannot even be closed is kept for reads until the process
// restarts.
func (a *storageActor) writeFailed(ctx actor.Context, msg *storeWriteFailed) {
	if msg.generation != a.generation || a.store == nil {
		return
	}
	if errors.Is(msg.err, storage.ErrWedged) {
		a.wedged = msg.err
		a.status.SetWriteFailure("store cannot take writes until the member restarts: " + msg.err.Error())
		a.log.Error().Err(msg.err).Msg("a write failed and the store cannot be reopened until the member restarts: serving reads, refusing writes")
		return
	}
	if errors.Is(msg.err, syscall.ENOSPC) {
		a.noSpace = msg.err
		if a.guard.Watermark().MinFree == 0 {
			a.status.SetWriteFailure("disk full: a write failed with no space left on device, and with --min-free-bytes 0 the member cannot tell when space is back: restart it once space is freed")
		}
	}
	a.log.Error().Err(msg.err).Msg("a write failed (disk full?): reopening the store")
	a.close()
	a.open(ctx)
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
	if reason := a.status.WritesRefused(); reason != "" {
		return reason + "; no store open"
	}
	return "store is not open"
}

// refusal says why a store request is refused although the store is open,
// or "" if it may be submitted.
func (a *storageActor) refusal() string {
	if reason := a.status.WritesRefused(); reason != "" {
		return reason
	}
	if a.store.ReadOnly() {
		return "store is open read-only (the disk was full); reopening it"
	}
	return ""
}

func (a *storageActor) close() {
	a.status.StorageReady.Store(false)
	a.status.ReadOnly.Store(false)
	if a.store == nil {
		return
	}
	if err := a.store.Close(); err != nil {
		a.log.Error().Err(err).Msg("close store")
	}
	a.store = nil
}

// prune deletes an obsolete copy. A store open read-only cannot: the copy
// stays on disk, never read (reads ask for exact versions), until a later
// prune of the same version.
func (a *storageActor) prune(msg *messages.PruneRequest) {
	if a.store == nil || msg.GetVersion() == 0 {
		return
	}
	if a.store.ReadOnly() || a.wedged != nil {
		a.log.Debug().Int64("id", msg.GetId()).Uint64("version", msg.GetVersion()).Msg("prune dropped: the store takes no writes")
		return
	}
	a.store.Submit(storage.Op{Kind: storage.OpDelete, ID: msg.GetId(), Version: msg.GetVersion(), Size: msg.GetSize()})
}

// storeBatch submits the batch's puts, or answers them all at once with
// the reason the member takes no writes.
func (a *storageActor) storeBatch(ctx actor.Context, batch *messages.StoreBatch) {
	var reason string
	if a.store == nil {
		reason = a.unavailable()
	} else {
		reason = a.refusal()
	}
	if reason != "" {
		sender := ctx.Sender()
		if sender == nil {
			return
		}
		acks := make([]*messages.StoreAck, len(batch.GetRequests()))
		for i, req := range batch.GetRequests() {
			acks[i] = &messages.StoreAck{RequestId: req.GetRequestId(), Error: reason,
				Id: req.GetId(), Version: req.GetVersion(), Size: uint32(len(req.GetPayload()))}
		}
		ctx.Request(sender, &messages.StoreAckBatch{Acks: acks})
		return
	}
	for _, msg := range batch.GetRequests() {
		a.store.Submit(storage.Op{
			Kind:     storage.OpPut,
			ID:       msg.GetId(),
			Version:  msg.GetVersion(),
			Payload:  msg.GetPayload(),
			MayExist: msg.GetAgain(),
			Token: &pendingStore{sender: ctx.Sender(), requestID: msg.GetRequestId(), submitted: time.Now(),
				id: msg.GetId(), version: msg.GetVersion(), size: uint32(len(msg.GetPayload()))},
		})
	}
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
		if a.dropAcks > 0 {
			a.dropAcks--
			a.log.Warn().Int("acks", len(g.acks.GetAcks())).Int("left", a.dropAcks).Msg("fault injection: dropping stored copies' acknowledgements")
			continue
		}
		ctx.Request(g.to, g.acks) // the sender tells the leader which member answered
	}
	a.publishStats()
}

func (a *storageActor) read(msg *messages.ReadRequest) *messages.ReadReply {
	reply := &messages.ReadReply{RequestId: msg.GetRequestId(), Id: msg.GetId(), Version: msg.GetVersion()}
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
