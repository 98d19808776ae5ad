package main

import (
	"fmt"
	"strings"
	"testing"
)

func TestRatiosPairRoundsWithinASystem(t *testing.T) {
	ms := []Measurement{
		// round 2 first: pairing must go by round, not by position
		{System: "tolerex", Nodes: 3, Round: 2, Clients: "leader", Op: "set", OpsPerSec: 900},
		{System: "tolerex", Nodes: 1, Round: 2, Clients: "leader", Op: "set", OpsPerSec: 1000},
		{System: "tolerex", Nodes: 1, Round: 1, Clients: "leader", Op: "set", OpsPerSec: 500},
		{System: "tolerex", Nodes: 3, Round: 1, Clients: "leader", Op: "set", OpsPerSec: 400},
		{System: "tolerex", Nodes: 3, Round: 1, Clients: "spread", Op: "set", OpsPerSec: 250},
		{System: "tolerex", Nodes: 3, Round: 3, Clients: "leader", Op: "set", OpsPerSec: 700}, // no single node in round 3
		{System: "etcd-p1", Nodes: 1, Round: 1, Clients: "leader", Op: "set", OpsPerSec: 2000},
		{System: "etcd-p1", Nodes: 3, Round: 1, Clients: "leader", Op: "set", OpsPerSec: 1000},
		{System: "tolerex", Nodes: 1, Round: 1, Clients: "leader", Op: "get", OpsPerSec: 100},
		{System: "tolerex", Nodes: 3, Round: 1, Clients: "leader", Op: "get", OpsPerSec: 90},
	}
	rows := Ratios(ms)
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%s %s %s %.2f median %.2f", r.System, r.Op, r.Clients, r.Ratios, r.Median))
	}
	want := []string{
		"tolerex set leader [0.80 0.90] median 0.85",
		"tolerex set spread [0.50] median 0.50",
		"tolerex get leader [0.90] median 0.90",
		"etcd-p1 set leader [0.50] median 0.50",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("ratio rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	md := Markdown(rows, "test")
	if !strings.Contains(md, "| tolerex | SET | leader | 750 | 650 | **0.85x** | 0.80, 0.90 |") {
		t.Fatalf("markdown lacks the tolerex SET row:\n%s", md)
	}
}

func TestMedianAndThousands(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{4, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.xs); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
	for x, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 6779.4: "6,779", 1234567: "1,234,567"} {
		if got := thousands(x); got != want {
			t.Errorf("thousands(%v) = %q, want %q", x, got, want)
		}
	}
}
