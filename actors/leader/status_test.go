package leader

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tolerex/tolerex/messages"
)

// TestStatusNotReady: /readyz means "a SET can succeed". On the gateway
// that leads: its leader is active and at least tolerance members are
// live. On another gateway: it knows which gateway leads (it forwards
// there; the members are the leader's to count).
func TestStatusNotReady(t *testing.T) {
	for _, tc := range []struct {
		name           string
		leading, known bool
		active         bool
		live           int64
		tolerance      int
		problem, want  string // want "" means ready
	}{
		{"leading, starting", true, true, false, 3, 2, "", "leader not active yet"},
		{"leading, no members", true, true, true, 0, 2, "", "0 live members, tolerance 2"},
		{"leading, one short", true, true, true, 1, 2, "", "1 live members, tolerance 2"},
		{"leading, exactly tolerance", true, true, true, 2, 2, "", ""},
		{"leading, more than tolerance", true, true, true, 3, 2, "", ""},
		{"leading, tolerance 1", true, true, true, 1, 1, "", ""},
		{"following a known leader", false, true, false, 0, 2, "", ""},
		{"no leader known", false, false, false, 0, 2, "", "no leader known"},
		{"a problem comes first", true, true, true, 3, 2, "leader stopped after 11 crashes", "leader stopped after 11 crashes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st Status
			st.Leading.Store(tc.leading)
			st.LeaderKnown.Store(tc.known)
			st.Active.Store(tc.active)
			st.LiveMembers.Store(tc.live)
			st.SetProblem(tc.problem)
			err := st.NotReady(tc.tolerance)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("NotReady = %v, want ready", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("NotReady = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestWithLiveness: a gateway that does not lead shows the members as the
// leader reported them, matched by slot, and says so; when the leader
// could not be asked, it says why and counts no member live.
func TestWithLiveness(t *testing.T) {
	notTracked := func() *ClusterStatus {
		return &ClusterStatus{
			Members:        []MemberStatus{{Slot: 0, ID: "a", Indexed: 7}, {Slot: 2, ID: "c"}, {Slot: 5, ID: "gone"}},
			LivenessSource: LivenessSource{LivenessError: errNotTracked.Error()},
		}
	}
	st := notTracked()
	st.WithLiveness(&messages.MemberLiveness{
		Active: true, NodeAddress: "127.0.0.1:7000", LiveMembers: 1,
		Members: []*messages.MemberLive{
			{Slot: 2, Alive: true, StorageReady: true, Messages: 3, InFlight: 4, LastHeartbeatUnixNano: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC).UnixNano()},
			{Slot: 0, Alive: false, WritesRefused: "disk full"},
		},
	}, nil)
	if st.LivenessFrom != "127.0.0.1:7000" || st.LivenessError != "" || st.LiveCount != 1 {
		t.Errorf("source %+v, live %d; want the leader's address and its count", st.LivenessSource, st.LiveCount)
	}
	if m := st.Members[1]; !m.Alive || !m.StorageReady || m.Messages != 3 || m.InFlight != 4 || m.LastHeartbeat != "2026-12-02T10:00:00Z" {
		t.Errorf("slot 2 = %+v; want the leader's figures", m)
	}
	if m := st.Members[0]; m.Alive || m.WritesRefused != "disk full" || m.Indexed != 7 {
		t.Errorf("slot 0 = %+v; want down, refusing writes, its index count kept", m)
	}
	if m := st.Members[2]; m.Alive || m.LastHeartbeat != "" {
		t.Errorf("slot 5, unknown to the leader = %+v; want not alive", m)
	}

	st = notTracked()
	st.WithLiveness(nil, errors.New("ask the leading gateway 127.0.0.1:7000: future: timeout"))
	if st.LivenessFrom != "" || !strings.Contains(st.LivenessError, "timeout") || st.LiveCount != 0 || st.Members[1].Alive {
		t.Errorf("after a failed ask: %+v", st)
	}
}
