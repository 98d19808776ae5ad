package main

import (
	"fmt"
	"sort"
	"strings"
)

// Measurement is one measured run.
type Measurement struct {
	System     string  `json:"system"`
	Nodes      int     `json:"nodes"`
	Round      int     `json:"round"`
	Clients    string  `json:"clients"` // "leader" or "spread"
	Op         string  `json:"op"`
	OpsPerSec  float64 `json:"ops_per_sec"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	Errors     int64   `json:"errors"`
	Mismatches int64   `json:"mismatches"`
}

// RatioRow compares one system's group (3 nodes, clients on the leader or
// spread) with its single node, workload by workload: each round's group
// figure over the single node's figure of the same round.
type RatioRow struct {
	System  string    `json:"system"`
	Op      string    `json:"op"`
	Clients string    `json:"clients"`
	Single  []float64 `json:"single_ops_per_sec"` // by round
	Group   []float64 `json:"group_ops_per_sec"`
	Ratios  []float64 `json:"ratios"`
	Median  float64   `json:"median_ratio"`
}

// Ratios pairs every group measurement with the single node's of the same
// system, workload and round; rounds without both are left out. Rows come
// in a stable order: system, workload, then the leader before spread.
func Ratios(ms []Measurement) []RatioRow {
	type key struct {
		system, op string
		round      int
	}
	single := map[key]float64{}
	for _, m := range ms {
		if m.Nodes == 1 {
			single[key{m.System, m.Op, m.Round}] = m.OpsPerSec
		}
	}
	rows := map[[3]string]*RatioRow{}
	var order [][3]string
	group := append([]Measurement(nil), ms...)
	sort.SliceStable(group, func(i, j int) bool { return group[i].Round < group[j].Round })
	for _, m := range group {
		one, ok := single[key{m.System, m.Op, m.Round}]
		if m.Nodes == 1 || !ok || one == 0 {
			continue
		}
		id := [3]string{m.System, m.Op, m.Clients}
		row := rows[id]
		if row == nil {
			row = &RatioRow{System: m.System, Op: m.Op, Clients: m.Clients}
			rows[id] = row
			order = append(order, id)
		}
		row.Single = append(row.Single, one)
		row.Group = append(row.Group, m.OpsPerSec)
		row.Ratios = append(row.Ratios, m.OpsPerSec/one)
	}
	sort.Slice(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if a[0] != b[0] {
			return a[0] > b[0] // "tolerex" before "etcd-..."
		}
		if a[1] != b[1] {
			return a[1] > b[1] // "set" before "get"
		}
		return a[2] < b[2] // "leader" before "spread"
	})
	out := make([]RatioRow, 0, len(order))
	for _, id := range order {
		row := rows[id]
		row.Median = median(row.Ratios)
		out = append(out, *row)
	}
	return out
}

// median of xs (the mean of the middle two for an even count); 0 if empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Markdown renders the ratio rows as a table, with the conditions above it.
func Markdown(rows []RatioRow, conditions string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Conditions: %s.\n\n", conditions)
	b.WriteString("| system | workload | clients on | 1 node, ops/s (median) | 3 nodes, ops/s (median) | 3 over 1, median | each round |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---|\n")
	for _, r := range rows {
		each := make([]string, len(r.Ratios))
		for i, x := range r.Ratios {
			each[i] = fmt.Sprintf("%.2f", x)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | **%.2fx** | %s |\n",
			r.System, strings.ToUpper(r.Op), r.Clients, thousands(median(r.Single)), thousands(median(r.Group)), r.Median, strings.Join(each, ", "))
	}
	return b.String()
}

// thousands formats x rounded, with commas between thousands.
func thousands(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
