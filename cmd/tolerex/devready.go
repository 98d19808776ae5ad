package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// readinessWatch follows one dev process's /readyz and decides what to
// report: one line when the node has been not ready for `after` (counted
// from its start or from the last time it was ready), and one line when it
// is ready again. It is pure: the caller polls and supplies the time.
type readinessWatch struct {
	name      string
	adminAddr string
	after     time.Duration

	since    time.Time // start of the current not-ready stretch; zero while ready
	reported bool      // the current stretch has been reported
}

// started restarts the clock for a process that was (re)started: it gets
// the full `after` to become ready. A stretch already reported goes on
// (a restart does not repeat the line; the new process becoming ready is
// reported as "ready again").
func (w *readinessWatch) started(now time.Time) {
	if !w.reported {
		w.since = now
	}
}

// observe takes one /readyz result (reason is the response body or the
// error) and returns the line to print, or "".
func (w *readinessWatch) observe(now time.Time, ready bool, reason string) string {
	if ready {
		line := ""
		if w.reported {
			line = fmt.Sprintf("%-9s ready again (was not ready for %s)", w.name, roundSeconds(now.Sub(w.since)))
		}
		w.since, w.reported = time.Time{}, false
		return line
	}
	if w.since.IsZero() {
		w.since = now
	}
	if w.reported || now.Sub(w.since) < w.after {
		return ""
	}
	w.reported = true
	return fmt.Sprintf("%-9s not ready for %s: %s (admin %s)", w.name, roundSeconds(now.Sub(w.since)), reason, w.adminAddr)
}

func roundSeconds(d time.Duration) time.Duration {
	return max(d.Round(time.Second), time.Second)
}

// devReadyPoll is how often dev asks every process's /readyz, and
// devReadyTimeout bounds one request (a paused process does not answer).
const (
	devReadyPoll    = time.Second
	devReadyTimeout = 2 * time.Second
)

// probeReady asks adminAddr's /readyz once: ready on 200, else the reason
// (the 503 body, "not ready: ...", or why the request failed).
func probeReady(ctx context.Context, client *http.Client, adminAddr string) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+adminAddr+"/readyz", nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, "admin address not answering: " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode == http.StatusOK {
		return true, ""
	}
	reason := strings.TrimSpace(string(body))
	if reason == "" {
		reason = resp.Status
	}
	return false, reason
}

// watchReady polls the process's /readyz until ctx ends (the process
// exited or dev stops) and prints what w decides.
func (s *devSupervisor) watchReady(ctx context.Context, w *readinessWatch) {
	client := &http.Client{Timeout: devReadyTimeout}
	w.started(time.Now())
	ticker := time.NewTicker(devReadyPoll)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		ready, reason := probeReady(ctx, client, w.adminAddr)
		if ctx.Err() != nil {
			return // the process is gone: its exit is reported instead
		}
		if line := w.observe(time.Now(), ready, reason); line != "" {
			s.printf("%s", line)
		}
	}
}
