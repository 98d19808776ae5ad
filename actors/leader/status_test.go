package leader

import (
	"strings"
	"testing"
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
