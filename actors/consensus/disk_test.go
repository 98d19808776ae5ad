package consensus

import (
	"errors"
	"strings"
	"testing"

	"github.com/tolerex/tolerex/storage/diskspace"
)

func TestSpaceWantedAfterENOSPC(t *testing.T) {
	mark := diskspace.NewWatermark(1000) // resumes at 1250
	free := func(n uint64) diskspace.State {
		return diskspace.State{Usage: diskspace.Usage{Free: n}, Checked: true}
	}
	tests := []struct {
		name string
		st   diskspace.State
		mark diskspace.Watermark
		want string // a part of the reason; "" to reopen
	}{
		{"no room", free(0), mark, "until 1250 bytes are free on the Raft log's filesystem (0 now)"},
		{"above the watermark, below the resume mark", free(1100), mark, "(1100 now)"},
		{"at the resume mark", free(1250), mark, ""},
		{"plenty", free(1 << 30), mark, ""},
		{"statfs never answered", diskspace.State{Err: errors.New("statfs: EIO")}, mark, "(0 now)"},
		{"watermark off", free(1 << 30), diskspace.NewWatermark(0), "restart it once space is freed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := spaceWanted(tt.st, tt.mark)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("spaceWanted = %q, want %q", got, tt.want)
			}
			if got != "" && !strings.HasPrefix(got, "disk full: ") {
				t.Errorf("reason %q does not start with the definite prefix", got)
			}
		})
	}
}
