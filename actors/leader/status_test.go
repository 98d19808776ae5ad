package leader

import (
	"strings"
	"testing"
)

// TestStatusNotReady: /readyz means "a SET can succeed": the leader is
// active and at least tolerance members are live.
func TestStatusNotReady(t *testing.T) {
	for _, tc := range []struct {
		name      string
		active    bool
		live      int64
		tolerance int
		want      string // "" means ready
	}{
		{"starting", false, 3, 2, "leader not active yet"},
		{"no members", true, 0, 2, "0 live members, tolerance 2"},
		{"one short", true, 1, 2, "1 live members, tolerance 2"},
		{"exactly tolerance", true, 2, 2, ""},
		{"more than tolerance", true, 3, 2, ""},
		{"tolerance 1", true, 1, 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st Status
			st.Active.Store(tc.active)
			st.LiveMembers.Store(tc.live)
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
