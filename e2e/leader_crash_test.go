package e2e

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tolerex/tolerex/gateway/client"
)

// TestLeaderCrashUnderLoad crashes the leader actor (not the process)
// while a client pipelines SETs: the supervisor restarts it from the
// metadata log, every SET answered OK is readable, every SET answered
// with an error is not (unless the error says its outcome is unknown),
// and the gateway serves again.
func TestLeaderCrashUnderLoad(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2, GatewayArgs: []string{"--fault-injection"}})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	cl := c.Dial(t)
	const n = 20000
	sent := make(chan error, 1)
	go func() {
		for id := 0; id < n; id++ {
			if err := cl.Send([]byte("SET " + strconv.Itoa(id) + " v" + strconv.Itoa(id))); err != nil {
				sent <- err
				return
			}
			if id%100 == 99 {
				if err := cl.Flush(); err != nil {
					sent <- err
					return
				}
			}
			if id == n/4 {
				go func() {
					if resp, err := httpClient.Post("http://"+c.Gateway.AdminAddr+"/debug/fault/leader-panic", "text/plain", nil); err == nil {
						resp.Body.Close()
					}
				}()
			}
		}
		sent <- cl.Flush()
	}()
	var ok, failed, unknown []int64
	for id := int64(0); id < n; id++ {
		reply, err := cl.ReadReply()
		if err != nil {
			t.Fatalf("reply %d: %v", id, err)
		}
		switch r := string(reply); {
		case r == "OK":
			ok = append(ok, id)
		case strings.Contains(r, "outcome of this request is unknown"):
			unknown = append(unknown, id)
		case strings.HasPrefix(r, "ERROR: "):
			failed = append(failed, id)
		default:
			t.Fatalf("SET %d: %q", id, r)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d OK, %d failed, %d unknown", len(ok), len(failed), len(unknown))
	if len(failed) == 0 {
		t.Logf("no SET failed: the crash hit between requests")
	}
	if !strings.Contains(c.Gateway.Log(), "leader crashed; restarting it") {
		t.Fatalf("the leader did not crash")
	}
	c.Gateway.WaitReady(t, 10*time.Second)
	c.WaitLive(t, 3, 10*time.Second)
	check := c.Dial(t)
	for _, id := range ok {
		v, found, err := check.Get(id)
		if err != nil || !found || string(v) != "v"+strconv.FormatInt(id, 10) {
			t.Fatalf("acknowledged SET %d: GET = %q found=%v err=%v", id, v, found, err)
		}
	}
	for _, id := range failed {
		v, found, err := check.Get(id)
		var se *client.ServerError
		if err != nil && !errors.As(err, &se) {
			t.Fatalf("GET %d: %v", id, err)
		}
		if found {
			t.Fatalf("SET %d was answered with an error but GET returns %q", id, v)
		}
	}
	if code := c.Gateway.Post(t, "/debug/fault/leader-panic"); code != http.StatusOK {
		t.Fatalf("second fault injection: %d", code)
	}
	c.Gateway.WaitReady(t, 10*time.Second)
	if err := check.Set(n+1, []byte("after")); err != nil {
		// The first request after a crash may race the restart.
		if err := check.Set(n+1, []byte("after")); err != nil {
			t.Fatalf("SET after the leader restarted: %v", err)
		}
	}
}
