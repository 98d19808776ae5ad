package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Admin is a node's admin HTTP server: /healthz, /readyz, /metrics,
// /debug/pprof/ and whatever the node adds with Handle.
type Admin struct {
	mux      *http.ServeMux
	server   *http.Server
	listener net.Listener
	log      zerolog.Logger
}

// NewAdmin listens on addr right away, so a port in use is reported before
// the node starts anything else. ready reports why the node is not ready
// yet (nil when it is).
func NewAdmin(addr string, reg *prometheus.Registry, ready func() error, log zerolog.Logger) (*Admin, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	a := &Admin{
		mux:      mux,
		listener: lis,
		log:      log,
		server:   &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
	}
	return a, nil
}

// Addr is the address the server listens on.
func (a *Admin) Addr() string { return a.listener.Addr().String() }

// Handle adds a route (a net/http ServeMux pattern).
func (a *Admin) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// HandleFunc adds a route (a net/http ServeMux pattern).
func (a *Admin) HandleFunc(pattern string, h http.HandlerFunc) { a.mux.HandleFunc(pattern, h) }

// Serve serves until Shutdown.
func (a *Admin) Serve() {
	go func() {
		if err := a.server.Serve(a.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error().Err(err).Msg("admin server stopped")
		}
	}()
}

// Shutdown stops the server, waiting up to the context's deadline for
// requests in progress.
func (a *Admin) Shutdown(ctx context.Context) error {
	return a.server.Shutdown(ctx)
}

// WriteJSON writes v as an indented JSON response.
func WriteJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
