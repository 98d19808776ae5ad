package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tolerex/tolerex/actors/leader"
)

func TestObservability(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 3, Tolerance: 2})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	everyone := append([]*Process{c.Gateway}, c.Members...)

	t.Run("healthz and readyz", func(t *testing.T) {
		for _, p := range everyone {
			for _, path := range []string{"/healthz", "/readyz"} {
				if body, status := p.Get(t, path); status != http.StatusOK {
					t.Errorf("%s %s: %d %s", p.Name, path, status, body)
				}
			}
		}
	})

	t.Run("gateway metrics", func(t *testing.T) {
		before := MetricsOf(t, c.Gateway)
		cl := c.Dial(t)
		const sets, dels = 20, 3
		for id := range int64(sets) {
			if err := cl.Set(id, []byte(fmt.Sprintf("observed %d", id))); err != nil {
				t.Fatalf("SET %d: %v", id, err)
			}
		}
		for id := range int64(10) { // 0..4 exist, 1000..1004 do not
			if id >= 5 {
				id += 995
			}
			if _, _, err := cl.Get(id); err != nil {
				t.Fatalf("GET %d: %v", id, err)
			}
		}
		for id := range int64(dels) {
			if _, err := cl.Del(id); err != nil {
				t.Fatalf("DEL %d: %v", id, err)
			}
		}
		invalid := []string{"FOO", "SET x y", "GET", "DEL abc"}
		for _, line := range invalid {
			if reply, err := cl.Do(line); err == nil {
				t.Fatalf("%q answered %q, want an error", line, reply)
			}
		}
		after := MetricsOf(t, c.Gateway)

		for _, tc := range []struct {
			command, result string
			delta           float64
		}{
			{"set", "ok", sets}, {"get", "ok", 5}, {"get", "not_found", 5}, {"del", "ok", dels},
			{"invalid", "invalid", float64(len(invalid))},
		} {
			labels := map[string]string{"command": tc.command, "result": tc.result}
			got := counterValue(after, "tolerex_commands_total", labels) - counterValue(before, "tolerex_commands_total", labels)
			if got != tc.delta {
				t.Errorf("tolerex_commands_total%v grew by %v, want %v", labels, got, tc.delta)
			}
		}
		if fam := after["tolerex_commands_total"]; fam.GetType() != dto.MetricType_COUNTER {
			t.Errorf("tolerex_commands_total has type %v, want counter", fam.GetType())
		}
		checkHistogram(t, after, "tolerex_command_seconds", map[string]string{"command": "set"}, sets)
		checkHistogram(t, after, "tolerex_replication_fanout_seconds", nil, sets)

		st := c.Status(t)
		if got := gaugeValue(t, after, "tolerex_live_members", nil); got != float64(len(c.Members)) {
			t.Errorf("tolerex_live_members %v, want %d", got, len(c.Members))
		}
		if st.Messages != sets-dels {
			t.Errorf("/api/cluster messages %d, want %d", st.Messages, sets-dels)
		}
		// The gauge reads what the leader last published.
		Eventually(t, 2*time.Second, "tolerex_index_messages to count what was stored", func() (bool, string) {
			got := gaugeValue(t, MetricsOf(t, c.Gateway), "tolerex_index_messages", nil)
			return got == sets-dels, fmt.Sprintf("%v, want %d", got, sets-dels)
		})
		// The gateway learns what members store from their heartbeats.
		Eventually(t, 5*time.Second, "tolerex_member_stored_messages to count every copy", func() (bool, string) {
			stored := after["tolerex_member_stored_messages"]
			if stored.GetType() != dto.MetricType_GAUGE || len(stored.GetMetric()) != len(c.Members) {
				t.Fatalf("tolerex_member_stored_messages: want one gauge per member, got %v", stored)
			}
			total := 0.0
			for _, m := range st.Members {
				series := MetricWithLabels(stored, map[string]string{"member": m.ID})
				if series == nil {
					t.Fatalf("tolerex_member_stored_messages has no series for member %s: %v", m.ID, stored)
				}
				total += series.GetGauge().GetValue()
			}
			if total >= 2*(sets-dels) {
				return true, ""
			}
			after = MetricsOf(t, c.Gateway)
			return false, fmt.Sprintf("they add up to %v, want at least %d copies", total, 2*(sets-dels))
		})
		kinds := map[string]bool{}
		for _, m := range after["tolerex_actor_mailbox_depth"].GetMetric() {
			kinds[MetricLabel(m, "kind")] = true
		}
		for _, kind := range []string{"gateway", "leader", "membership", "selector"} {
			if !kinds[kind] {
				t.Errorf("tolerex_actor_mailbox_depth has no kind=%q series (has %v)", kind, kinds)
			}
		}
		var bridged []string
		for name := range after {
			if strings.HasPrefix(name, "protoactor_") {
				bridged = append(bridged, name)
			}
		}
		sort.Strings(bridged)
		t.Logf("protoactor metrics on the gateway: %v", bridged)
		if len(bridged) == 0 {
			t.Errorf("no protoactor_* metric on the gateway: the OpenTelemetry bridge exports nothing")
		}
		if histogramCount(after, "protoactor_actor_message_receive_duration_seconds") == 0 {
			t.Errorf("protoactor_actor_message_receive_duration_seconds observed nothing")
		}
		// docs/operations.md names the spawn counter.
		spawns := after["protoactor_actor_spawn_count_total"]
		if spawns.GetType() != dto.MetricType_COUNTER || len(spawns.GetMetric()) == 0 {
			t.Errorf("protoactor_actor_spawn_count_total missing or not a counter: %v", spawns)
		}
	})

	t.Run("member metrics", func(t *testing.T) {
		holding := 0
		for _, m := range c.Members {
			fams := MetricsOf(t, m)
			messages := gaugeValue(t, fams, "tolerex_member_messages", nil)
			// The gateway learns the count from heartbeats: wait for one.
			Eventually(t, 5*time.Second, m.Name+": /api/cluster to report tolerex_member_messages", func() (bool, string) {
				reported := memberAt(t, c, m.NodeAddr).Messages
				return float64(reported) == messages, fmt.Sprintf("tolerex_member_messages %v, /api/cluster says %d", messages, reported)
			})
			if messages == 0 {
				continue
			}
			holding++
			if puts := histogramCount(fams, "tolerex_member_put_seconds"); puts < messages {
				t.Errorf("%s: tolerex_member_put_seconds counted %v puts, holds %v messages", m.Name, puts, messages)
			}
			if histogramCount(fams, "tolerex_member_commit_batch_ops") == 0 {
				t.Errorf("%s: tolerex_member_commit_batch_ops counted no commit", m.Name)
			}
		}
		if holding < 2 {
			t.Errorf("%d members hold messages, want at least 2 (tolerance 2)", holding)
		}
	})

	t.Run("api cluster json", func(t *testing.T) {
		body, status := c.Gateway.Get(t, "/api/cluster")
		if status != http.StatusOK {
			t.Fatalf("/api/cluster: %d %s", status, body)
		}
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("/api/cluster is not JSON: %v\n%s", err, body)
		}
		if doc["leader"] != c.Gateway.NodeAddr {
			t.Errorf("leader %v, want %s", doc["leader"], c.Gateway.NodeAddr)
		}
		if doc["tolerance"] != 2.0 {
			t.Errorf("tolerance %v, want 2", doc["tolerance"])
		}
		members, ok := doc["members"].([]any)
		if !ok || len(members) != len(c.Members) {
			t.Fatalf("members %v, want %d entries", doc["members"], len(c.Members))
		}
		addrs := map[string]bool{}
		for _, p := range c.Members {
			addrs[p.NodeAddr] = true
		}
		var messages, bytes float64
		for _, raw := range members {
			m, _ := raw.(map[string]any)
			if id, _ := m["id"].(string); id == "" {
				t.Errorf("member without id: %v", m)
			}
			if addr, _ := m["node_address"].(string); !addrs[addr] {
				t.Errorf("member node_address %v is none of the members' %v", m["node_address"], addrs)
			}
			if m["alive"] != true {
				t.Errorf("member alive = %v, want true: %v", m["alive"], m)
			}
			n, ok1 := m["messages"].(float64)
			b, ok2 := m["bytes"].(float64)
			if !ok1 || !ok2 {
				t.Errorf("member messages/bytes not numbers: %v", m)
			}
			messages, bytes = messages+n, bytes+b
		}
		if messages == 0 || bytes == 0 {
			t.Errorf("members report %v messages and %v bytes after the writes, want both > 0", messages, bytes)
		}
	})

	t.Run("api tree json", func(t *testing.T) {
		view := c.Tree(t)
		if len(view.Nodes) != 1+len(c.Members) {
			t.Fatalf("/api/tree has %d nodes, want %d: %+v", len(view.Nodes), 1+len(c.Members), view)
		}
		gw := view.Nodes[0]
		if gw.Role != "gateway" || gw.NodeAddress != c.Gateway.NodeAddr {
			t.Errorf("first node %s %s, want gateway %s", gw.Role, gw.NodeAddress, c.Gateway.NodeAddr)
		}
		for _, id := range []string{"gateway", "leader", "leader/selector", "membership"} {
			if findActor(gw.Actors, id) == nil {
				t.Errorf("gateway tree lacks %s: %+v", id, gw.Actors)
			}
		}
		st := c.Status(t)
		ids := map[string]bool{}
		for _, m := range st.Members {
			ids[m.ID] = true
		}
		for _, n := range view.Nodes[1:] {
			if n.Role != "member" || !ids[n.MemberID] || !n.Reachable || n.Error != "" {
				t.Errorf("member node %+v: want a reachable member of %v", n, ids)
			}
			if findActor(n.Actors, "member") == nil || findActor(n.Actors, "member/storage") == nil {
				t.Errorf("member %s tree lacks member or member/storage: %+v", n.MemberID, n.Actors)
			}
			delete(ids, n.MemberID)
		}
		if len(ids) != 0 {
			t.Errorf("/api/tree misses members %v", ids)
		}
	})

	t.Run("pprof", func(t *testing.T) {
		for _, p := range []*Process{c.Gateway, c.Members[0]} {
			body, status := p.Get(t, "/debug/pprof/")
			if status != http.StatusOK || !bytes.Contains(body, []byte("goroutine")) {
				t.Errorf("%s /debug/pprof/: %d, want 200 with the profile index", p.Name, status)
			}
			body, status = p.Get(t, "/debug/pprof/goroutine?debug=1")
			if status != http.StatusOK || !bytes.Contains(body, []byte("goroutine profile:")) {
				t.Errorf("%s /debug/pprof/goroutine?debug=1: %d %.200s", p.Name, status, body)
			}
		}
	})

	t.Run("json logs", func(t *testing.T) {
		for _, p := range everyone {
			lines := checkJSONLog(t, p)
			protoactor := 0
			for _, l := range lines {
				if l.fields["lib"] == "protoactor" {
					protoactor++
				}
				if msg, _ := l.fields["message"].(string); isProtoactorMessage(msg) && l.fields["lib"] != "protoactor" {
					t.Errorf("%s: protoactor line without \"lib\":\"protoactor\": %s", p.Name, l.raw)
				}
			}
			// The harness runs every process at --log-level debug, where
			// protoactor's start-up lines show.
			if protoactor == 0 {
				t.Errorf("%s: no \"lib\":\"protoactor\" line at --log-level debug", p.Name)
			}
		}
	})
}

// memberAt is the gateway's status of the member at nodeAddr.
func memberAt(t *testing.T, c *Cluster, nodeAddr string) leader.MemberStatus {
	t.Helper()
	for _, m := range c.Status(t).Members {
		if m.NodeAddress == nodeAddr {
			return m
		}
	}
	t.Fatalf("the gateway does not list the member at %s", nodeAddr)
	return leader.MemberStatus{}
}

// isProtoactorMessage reports whether msg is one protoactor logs.
func isProtoactorMessage(msg string) bool {
	for _, known := range []string{"actor system started", "Starting remote with address", "Started Activator",
		"Started EndpointManager", "Starting Proto.Actor server", "Started EndpointWriter. connecting",
		"EndpointWriter connected", "Started EndpointWatcher"} {
		if msg == known {
			return true
		}
	}
	return false
}

func TestObservabilityReadinessAndLogLevels(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 1, Tolerance: 1,
		GatewayArgs: []string{"--log-level", "info"},
		MemberArgs:  []string{"--log-level", "warn"}})
	c.DumpLogsOnFailure(t)
	m := c.Members[0]

	// Without its gateway the member is alive but not ready.
	m.Start(t)
	Eventually(t, 20*time.Second, "member /healthz to answer 200", func() (bool, string) {
		status, _ := probeAdmin(m, "/healthz")
		return status == http.StatusOK, fmt.Sprintf("%d; member log:\n%s", status, m.LogTail(3000))
	})
	var body []byte
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		var status int
		body, status = m.Get(t, "/readyz")
		if status != http.StatusServiceUnavailable {
			t.Fatalf("member /readyz without a gateway: %d %s, want 503", status, body)
		}
	}
	if !bytes.Contains(body, []byte("gateway")) {
		t.Errorf("member /readyz body %q does not say it waits for the gateway", body)
	}

	c.Gateway.Start(t)
	c.Gateway.WaitReady(t, 20*time.Second)
	m.WaitReady(t, 20*time.Second)
	c.WaitLive(t, 1, 20*time.Second)
	cl := c.Dial(t)
	if err := cl.Set(1, []byte("ready")); err != nil {
		t.Fatalf("SET after the member became ready: %v", err)
	}
	if v, found, err := cl.Get(1); err != nil || !found || string(v) != "ready" {
		t.Fatalf("GET 1 = %q %v %v", v, found, err)
	}

	t.Run("gateway at info", func(t *testing.T) {
		lines := checkJSONLog(t, c.Gateway)
		started := false
		for _, l := range lines {
			level, _ := l.fields["level"].(string)
			msg, _ := l.fields["message"].(string)
			if level == "debug" || level == "trace" {
				t.Errorf("gateway at --log-level info wrote a %s line: %s", level, l.raw)
			}
			if l.fields["lib"] == "protoactor" && level == "info" {
				t.Errorf("protoactor info-level chatter at --log-level info: %s", l.raw)
			}
			if strings.Contains(msg, "Started EndpointWriter") || isProtoactorMessage(msg) {
				t.Errorf("protoactor start-up chatter at --log-level info: %s", l.raw)
			}
			if msg == "starting gateway" && level == "info" {
				started = true
			}
		}
		if !started {
			t.Errorf("gateway at --log-level info has no info line \"starting gateway\"")
		}
	})
	t.Run("member at warn", func(t *testing.T) {
		for _, l := range checkJSONLog(t, m) {
			level, _ := l.fields["level"].(string)
			if level != "warn" && level != "error" && level != "fatal" && level != "panic" {
				t.Errorf("member at --log-level warn wrote a %s line: %s", level, l.raw)
			}
		}
	})
}

// probeAdmin GETs path from p's admin server; status 0 means no answer.
func probeAdmin(p *Process, path string) (int, []byte) {
	resp, err := httpClient.Get("http://" + p.AdminAddr + path)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	return resp.StatusCode, body.Bytes()
}

// logLine is one parsed JSON log line.
type logLine struct {
	raw    string
	fields map[string]any
}

// checkJSONLog checks that every line of p's log is a JSON object with a
// known level, an RFC 3339 time and a string message, each key once, and
// an error field, if any, with the error's text; it returns the valid lines.
func checkJSONLog(t *testing.T, p *Process) []logLine {
	t.Helper()
	text := strings.TrimRight(p.Log(), "\n")
	if text == "" {
		return nil
	}
	levels := map[string]bool{"trace": true, "debug": true, "info": true, "warn": true, "error": true, "fatal": true, "panic": true}
	var lines []logLine
	bad := 0
	for _, raw := range strings.Split(text, "\n") {
		fields, err := decodeLogLine(raw)
		if err == nil {
			level, _ := fields["level"].(string)
			stamp, _ := fields["time"].(string)
			_, isString := fields["message"].(string)
			switch {
			case !levels[level]:
				err = fmt.Errorf("level %v", fields["level"])
			case !isString:
				err = fmt.Errorf("message %v is not a string", fields["message"])
			default:
				if _, perr := time.Parse(time.RFC3339, stamp); perr != nil {
					err = fmt.Errorf("time %v: %w", fields["time"], perr)
				}
			}
			if value, has := fields["error"]; has && err == nil {
				if text, _ := value.(string); text == "" {
					err = fmt.Errorf("error field %v carries no text", value)
				}
			}
		}
		if err != nil {
			if bad++; bad <= 5 {
				t.Errorf("%s log line is not a valid JSON log record (%v): %s", p.Name, err, raw)
			}
			continue
		}
		lines = append(lines, logLine{raw: raw, fields: fields})
	}
	if bad > 5 {
		t.Errorf("%s: %d invalid log lines in all", p.Name, bad)
	}
	return lines
}

// decodeLogLine decodes a JSON object, refusing a key that appears twice
// (log pipelines keep either occurrence, or reject the record).
func decodeLogLine(raw string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	fields := map[string]any{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var value any
		if err := dec.Decode(&value); err != nil {
			return nil, err
		}
		if _, dup := fields[key]; dup {
			return nil, fmt.Errorf("key %q appears twice", key)
		}
		fields[key] = value
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data")
	}
	return fields, nil
}

// counterValue is the value of the counter series of name with labels (0
// when absent).
func counterValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	return MetricWithLabels(fams[name], labels).GetCounter().GetValue()
}

// gaugeValue is the value of the gauge series of name with labels; it
// fails the test when the series is missing or not a gauge.
func gaugeValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	fam := fams[name]
	if fam.GetType() != dto.MetricType_GAUGE {
		t.Errorf("%s: type %v, want gauge", name, fam.GetType())
		return -1
	}
	m := MetricWithLabels(fam, labels)
	if m == nil {
		t.Errorf("%s has no series %v", name, labels)
		return -1
	}
	return m.GetGauge().GetValue()
}

// checkHistogram checks that name is a histogram whose series with labels
// counted at least minCount observations into cumulative buckets.
func checkHistogram(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string, minCount uint64) {
	t.Helper()
	fam := fams[name]
	if fam.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("%s: type %v, want histogram", name, fam.GetType())
		return
	}
	m := MetricWithLabels(fam, labels)
	if m == nil {
		t.Errorf("%s has no series %v", name, labels)
		return
	}
	h := m.GetHistogram()
	if h.GetSampleCount() < minCount {
		t.Errorf("%s%v counted %d observations, want at least %d", name, labels, h.GetSampleCount(), minCount)
	}
	if h.GetSampleSum() <= 0 {
		t.Errorf("%s%v sum %v, want > 0", name, labels, h.GetSampleSum())
	}
	previous := uint64(0)
	for _, b := range h.GetBucket() {
		if b.GetCumulativeCount() < previous || b.GetCumulativeCount() > h.GetSampleCount() {
			t.Errorf("%s%v buckets are not cumulative: %v", name, labels, h.GetBucket())
			break
		}
		previous = b.GetCumulativeCount()
	}
	if len(h.GetBucket()) == 0 {
		t.Errorf("%s%v has no buckets", name, labels)
	}
}

// histogramCount returns the observations of the histogram name
// summed over its series (0 when it is missing or not a histogram).
func histogramCount(fams map[string]*dto.MetricFamily, name string) float64 {
	fam := fams[name]
	if fam.GetType() != dto.MetricType_HISTOGRAM {
		return 0
	}
	total := 0.0
	for _, m := range fam.GetMetric() {
		total += float64(m.GetHistogram().GetSampleCount())
	}
	return total
}
