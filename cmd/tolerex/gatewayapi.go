package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/tolerex/tolerex/actors/consensus"
	"github.com/tolerex/tolerex/actors/leader"
	"github.com/tolerex/tolerex/actors/tree"
	"github.com/tolerex/tolerex/cluster"
	"github.com/tolerex/tolerex/cluster/certs"
	"github.com/tolerex/tolerex/gateway/codec"
	"github.com/tolerex/tolerex/messages"
)

// gatewayAPI is a gateway's admin HTTP API beyond health and metrics.
type gatewayAPI struct {
	root      *actor.RootContext
	leader    *actor.PID
	consensus *actor.PID
	self      string // this gateway's node address
	log       zerolog.Logger
}

// How long the admin API waits for a change of the Raft group to be
// proposed and applied (a learner may need a while to catch up).
const (
	addGatewayLimit    = time.Minute
	removeGatewayLimit = 30 * time.Second
)

func (a gatewayAPI) register(admin *cluster.Admin, node *cluster.Node) {
	admin.HandleFunc("GET /api/cluster", func(w http.ResponseWriter, _ *http.Request) {
		st, err := leader.RequestStatus(a.root, a.leader, 2*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		// The leader's liveness figures and every gateway's report are
		// asked for at the same time: right after a gateway died each
		// waits a second for it, and an operator looks then.
		var (
			liveness    *messages.MemberLiveness
			livenessErr error
			asked       sync.WaitGroup
		)
		needLiveness := st.LivenessFrom == ""
		if needLiveness {
			asked.Go(func() { liveness, livenessErr = leader.RequestLiveness(a.root, a.leader, time.Second) })
		}
		st.Raft, _ = a.raftStatus()
		if st.Raft != nil {
			st.Gateways = a.gatewayViews(st.Raft)
		}
		asked.Wait()
		if needLiveness {
			st.WithLiveness(liveness, livenessErr)
		}
		cluster.WriteJSON(w, st)
	})
	admin.HandleFunc("GET /api/raft", func(w http.ResponseWriter, _ *http.Request) {
		st, err := a.raftStatus()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		cluster.WriteJSON(w, st)
	})
	admin.HandleFunc("GET /api/messages/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := codec.ParseID([]byte(r.PathValue("id")))
		if !ok {
			http.Error(w, "id must be a signed 64-bit integer", http.StatusBadRequest)
			return
		}
		loc, err := leader.RequestLocation(a.root, a.leader, id, 2*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if loc.LivenessFrom == "" {
			loc.WithLiveness(leader.RequestLiveness(a.root, a.leader, time.Second))
		}
		cluster.WriteJSON(w, loc)
	})
	admin.HandleFunc("GET /api/tree", func(w http.ResponseWriter, _ *http.Request) {
		view := clusterTree(node, a.leader)
		if st, err := a.raftStatus(); err == nil {
			gateways := a.gatewayTrees(st)
			if !slices.ContainsFunc(st.Gateways, func(g consensus.GatewayStatus) bool { return g.NodeAddress == a.self }) {
				// This gateway is not in the group it knows (it was removed,
				// or its Raft does not run): it still shows itself, with
				// its consensus actor's reason.
				own := view.Nodes[0]
				askTree(a.root, a.consensus, time.Second, &own)
				gateways = append([]tree.NodeView{own}, gateways...)
			}
			view.Nodes = append(gateways, view.Nodes[1:]...) // the gateways (this one included), then the members
		}
		cluster.WriteJSON(w, view)
	})
	admin.HandleFunc("POST /api/gateways", a.addGateway)
	admin.HandleFunc("DELETE /api/gateways/{id}", a.removeGateway)
}

func (a gatewayAPI) raftStatus() (*consensus.Status, error) {
	st, err := cluster.Ask[*consensus.Status](a.root, a.consensus, &consensus.StatusRequest{}, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("ask consensus for its status: %w", err)
	}
	return st, nil
}

// gatewayViews asks every gateway of the group, this one included, for its
// own report of its place in the group, in parallel.
func (a gatewayAPI) gatewayViews(st *consensus.Status) []consensus.GatewayView {
	out := make([]consensus.GatewayView, len(st.Gateways))
	var wg sync.WaitGroup
	for i, g := range st.Gateways {
		out[i] = consensus.GatewayView{ID: g.ID, NodeAddress: g.NodeAddress, Role: g.Role}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := cluster.Ask[*messages.RaftStatus](a.root, a.consensusOf(g.NodeAddress), &messages.RaftStatusRequest{}, time.Second)
			switch {
			case err != nil:
				out[i].Error = err.Error()
			default:
				out[i].State, out[i].Leader, out[i].Term = r.GetState(), r.GetState() == "leader", r.GetTerm()
				out[i].Commit, out[i].Applied, out[i].SnapshotIndex, out[i].Problem = r.GetCommit(), r.GetApplied(), r.GetSnapshotIndex(), r.GetProblem()
			}
		}()
	}
	wg.Wait()
	return out
}

// gatewayTrees asks every gateway of the group for its supervision tree.
func (a gatewayAPI) gatewayTrees(st *consensus.Status) []tree.NodeView {
	out := make([]tree.NodeView, len(st.Gateways))
	var wg sync.WaitGroup
	for i, g := range st.Gateways {
		out[i] = tree.NodeView{NodeAddress: g.NodeAddress, Role: string(certs.RoleGateway), Actors: []tree.ActorView{}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			askTree(a.root, a.consensusOf(g.NodeAddress), time.Second, &out[i])
		}()
	}
	wg.Wait()
	return out
}

// consensusOf is the consensus actor of the gateway at address (this
// gateway's own, locally).
func (a gatewayAPI) consensusOf(address string) *actor.PID {
	if address == a.self {
		return a.consensus
	}
	return actor.NewPID(address, messages.ConsensusActor)
}

// addGatewayRequest is the body of POST /api/gateways.
type addGatewayRequest struct {
	ID          uint64 `json:"id"`
	NodeAddress string `json:"node_address"`
}

// addGateway adds a gateway as a learner, waits until it caught up with
// the log and promotes it to voter.
func (a gatewayAPI) addGateway(w http.ResponseWriter, r *http.Request) {
	var req addGatewayRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 4096))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil || req.ID == 0 || req.NodeAddress == "" {
		http.Error(w, `want a JSON body {"id": N, "node_address": "host:port"} with a positive id`, http.StatusBadRequest)
		return
	}
	if err := cluster.CheckNodeAddress(req.NodeAddress); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	deadline := time.Now().Add(addGatewayLimit)
	// A learner added earlier that was not promoted (it had not caught up
	// in time) is promoted now: adding is safe to repeat.
	if !a.isLearnerAt(req.ID, req.NodeAddress) {
		if err := a.change(&messages.GatewayChange{Kind: messages.GatewayChangeKind_GATEWAY_ADD_LEARNER, Id: req.ID, NodeAddress: req.NodeAddress}, deadline); err != nil {
			http.Error(w, "add gateway "+strconv.FormatUint(req.ID, 10)+" as a learner: "+err.Error(), http.StatusConflict)
			return
		}
	}
	if err := a.awaitRole(req.ID, "learner", deadline); err != nil {
		http.Error(w, err.Error(), http.StatusGatewayTimeout)
		return
	}
	if err := a.change(&messages.GatewayChange{Kind: messages.GatewayChangeKind_GATEWAY_PROMOTE, Id: req.ID}, deadline); err != nil {
		http.Error(w, fmt.Sprintf("gateway %d was added as a learner but not promoted: %v (is it running with --initial-cluster-state existing? the same add-gateway again promotes it once it caught up)", req.ID, err), http.StatusGatewayTimeout)
		return
	}
	if err := a.awaitRole(req.ID, "voter", deadline); err != nil {
		http.Error(w, err.Error(), http.StatusGatewayTimeout)
		return
	}
	a.log.Info().Uint64("gateway", req.ID).Str("address", req.NodeAddress).Msg("gateway added to the Raft group")
	cluster.WriteJSON(w, map[string]any{"id": req.ID, "node_address": req.NodeAddress, "role": "voter"})
}

// removeGateway removes a gateway (moving leadership off it first).
func (a gatewayAPI) removeGateway(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		http.Error(w, "the gateway id must be a positive number", http.StatusBadRequest)
		return
	}
	deadline := time.Now().Add(removeGatewayLimit)
	if err := a.change(&messages.GatewayChange{Kind: messages.GatewayChangeKind_GATEWAY_REMOVE, Id: id}, deadline); err != nil {
		http.Error(w, fmt.Sprintf("remove gateway %d: %v", id, err), http.StatusConflict)
		return
	}
	if err := a.awaitRole(id, "", deadline); err != nil {
		http.Error(w, err.Error(), http.StatusGatewayTimeout)
		return
	}
	a.log.Info().Uint64("gateway", id).Msg("gateway removed from the Raft group")
	cluster.WriteJSON(w, map[string]any{"id": id, "removed": true})
}

// change asks the leading gateway's consensus actor to make a change,
// again while it answers that it may succeed later, until deadline.
func (a gatewayAPI) change(c *messages.GatewayChange, deadline time.Time) error {
	target := a.consensus
	for {
		res, err := a.root.RequestFuture(target, c, 3*time.Second).Result()
		reply, ok := res.(*messages.GatewayChangeReply)
		switch {
		case err != nil:
			err = fmt.Errorf("ask %s: %w", target.Address, err)
			target = a.consensus
		case !ok:
			return fmt.Errorf("unexpected reply %T", res)
		case reply.GetError() == "":
			return nil
		case !reply.GetRetry():
			return errors.New(reply.GetError())
		default:
			err = errors.New(reply.GetError())
			target = a.consensus
			if l := reply.GetLeader(); l != "" && l != a.self {
				target = actor.NewPID(l, messages.ConsensusActor)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// isLearnerAt reports whether gateway id is a learner of the group with the
// given node address.
func (a gatewayAPI) isLearnerAt(id uint64, address string) bool {
	st, err := a.raftStatus()
	if err != nil {
		return false
	}
	i := slices.IndexFunc(st.Gateways, func(g consensus.GatewayStatus) bool { return g.ID == id })
	return i >= 0 && st.Gateways[i].Role == "learner" && st.Gateways[i].NodeAddress == address
}

// awaitRole waits until this gateway's view of the group, or the leading
// gateway's, shows gateway id with role ("" for gone). The leader's counts
// too: a gateway removed from the group may never hear that its removal
// committed, since the leader stops sending it the log.
func (a gatewayAPI) awaitRole(id uint64, role string, deadline time.Time) error {
	for {
		st, err := a.raftStatus()
		if err == nil {
			i := slices.IndexFunc(st.Gateways, func(g consensus.GatewayStatus) bool { return g.ID == id })
			if (role == "" && i < 0) || (i >= 0 && st.Gateways[i].Role == role) {
				return nil
			}
			if st.LeadAddress != "" && st.LeadAddress != a.self && a.leaderShows(st.LeadAddress, id, role) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway %d did not become %q in time", id, role)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// leaderShows reports whether the gateway at address, asked over remote,
// leads and lists gateway id with role ("" for not at all).
func (a gatewayAPI) leaderShows(address string, id uint64, role string) bool {
	r, err := cluster.Ask[*messages.RaftStatus](a.root, a.consensusOf(address), &messages.RaftStatusRequest{}, time.Second)
	if err != nil || r.GetState() != "leader" {
		return false
	}
	switch {
	case slices.Contains(r.GetVoters(), id):
		return role == "voter"
	case slices.Contains(r.GetLearners(), id):
		return role == "learner"
	default:
		return role == ""
	}
}

// clusterTree gathers the supervision tree of the gateway and of every
// member it knows, asking live members in parallel.
func clusterTree(node *cluster.Node, leaderPID *actor.PID) tree.ClusterView {
	view := tree.ClusterView{Nodes: []tree.NodeView{tree.ViewOf(node.Tree.Local(node.Address(), string(certs.RoleGateway), ""))}}
	st, err := leader.RequestStatus(node.System.Root, leaderPID, 2*time.Second)
	if err != nil {
		view.Nodes[0].Error = err.Error()
		return view
	}
	members := make([]tree.NodeView, len(st.Members))
	var wg sync.WaitGroup
	for i, m := range st.Members {
		members[i] = tree.NodeView{NodeAddress: m.NodeAddress, Role: string(certs.RoleMember), MemberID: m.ID, Actors: []tree.ActorView{}}
		// Only the active leader knows which members are alive; another
		// gateway asks them all.
		if st.Active && !m.Alive {
			members[i].Error = "member is down"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// 2 s: a gateway that never talked to the member opens a TLS
			// connection to it first (over 1 s once, in CI, under -race).
			askTree(node.System.Root, actor.NewPID(m.NodeAddress, messages.MemberActor), 2*time.Second, &members[i])
		}()
	}
	wg.Wait()
	view.Nodes = append(view.Nodes, members...)
	return view
}

// askTree asks the actor at pid for its node's supervision tree and puts
// it in view, or the reason it could not get it in view.Error.
func askTree(root *actor.RootContext, pid *actor.PID, timeout time.Duration, view *tree.NodeView) {
	reply, err := cluster.Ask[*messages.TreeReply](root, pid, &messages.TreeRequest{}, timeout)
	if err != nil {
		view.Error = err.Error()
		return
	}
	*view = tree.ViewOf(reply.GetTree())
}
