package local

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"testing"
)

// fakeNodeEnv makes the test binary act as a tolerex node: the launcher's
// tests run it as their Binary instead of building tolerex.
const fakeNodeEnv = "TOLEREX_LOCAL_FAKE_NODE"

// fakeLiveEnv is the live_members a fake gateway's /api/cluster reports.
const fakeLiveEnv = "TOLEREX_LOCAL_FAKE_LIVE"

func TestMain(m *testing.M) {
	if os.Getenv(fakeNodeEnv) == "1" {
		os.Exit(fakeNode(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeNode serves what the launcher asks of a node on --admin-addr:
// /readyz (503 "not ready: told so" after POST /debug/not-ready, 200 after
// POST /debug/ready), /api/cluster ({"active": true, "live_members":
// $TOLEREX_LOCAL_FAKE_LIVE}) and POST /debug/exit (exit status 3). It
// exits 0 on SIGTERM.
func fakeNode(args []string) int {
	var admin string
	for i, a := range args {
		if a == "--admin-addr" && i+1 < len(args) {
			admin = args[i+1]
		}
	}
	fmt.Println("fake node", args)
	var notReady atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if notReady.Load() {
			http.Error(w, "not ready: told so", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /api/cluster", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"active": true, "live_members": %s}`, os.Getenv(fakeLiveEnv))
	})
	mux.HandleFunc("POST /debug/not-ready", func(http.ResponseWriter, *http.Request) { notReady.Store(true) })
	mux.HandleFunc("POST /debug/ready", func(http.ResponseWriter, *http.Request) { notReady.Store(false) })
	mux.HandleFunc("POST /debug/exit", func(http.ResponseWriter, *http.Request) { os.Exit(3) })
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		os.Exit(0)
	}()
	if err := http.ListenAndServe(admin, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// fakeConfig is a cluster of fake nodes in a fresh dir.
func fakeConfig(t *testing.T, gateways, members int) Config {
	t.Helper()
	t.Setenv(fakeNodeEnv, "1")
	t.Setenv(fakeLiveEnv, fmt.Sprint(members))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Binary: exe, Dir: t.TempDir(), Gateways: gateways, Members: members, Tolerance: 1, Insecure: true}
	if gateways > 1 {
		cfg.GatewayGroupArgs = RaftGroup
	}
	return cfg
}
