package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/flowlock/flowlock/dashboard"
	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/calibrate"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/listen"
	"github.com/flowlock/flowlock/internal/metrics"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/risk"
	"github.com/flowlock/flowlock/internal/wire"
)

// sharedStartTimeout bounds connecting to Redis and reading the shared
// quarantine at startup; past it the replica starts on local state.
const sharedStartTimeout = 3 * time.Second

// authzService is the gRPC health service name of the Check API, so that a
// health check can ask about it by name as well as about the server ("").
const authzService = "envoy.service.auth.v3.Authorization"

// serve runs the service until ctx is cancelled: load the configuration,
// build the decision stack, open the listeners, serve, and shut down in
// order.
func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := config.Load(args, getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stderr)
		}
		return err
	}
	log := newLogger(cfg, stderr)
	log.Info("starting", "version", buildVersion(), "mode", cfg.Mode, "grpc_addr", cfg.GRPCAddr, "http_addr", cfg.HTTPAddr)
	setMemoryLimit(cfg, getenv, log)
	startExposure(cfg, args, log)

	svc, err := newService(ctx, cfg, log)
	if err != nil {
		return err
	}
	lis, err := openListeners(cfg, log) // listeners.go: caps, allow-lists, TLS, gRPC limits
	if err != nil {
		return err
	}
	svc.m.RegisterSources(svc.reg, metrics.Sources{Listeners: lis.counts})
	defer lis.close()
	return svc.run(ctx, lis, stderr)
}

// service is one running flowlock-authz: the decision stack and everything
// that serves, records and persists it.
type service struct {
	cfg   config.Config
	log   *slog.Logger
	reg   *prometheus.Registry
	m     *metrics.Metrics
	stack *wire.Stack
	live  *dashboard.Tracker
	state *persister // nil without --state-file
	// stopShared stops the link to the other replicas; nil without one.
	stopShared context.CancelFunc
	// calib records the score distribution for flowlock-authz calibrate.
	calib *calibrate.Recorder
}

// newService builds the decision stack and its metrics, and restores the
// quarantine from --state-file.
func newService(ctx context.Context, cfg config.Config, log *slog.Logger) (*service, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := newMetrics(reg)
	calib := calibrate.NewRecorder(0, time.Now())
	s := &service{
		cfg: cfg,
		log: log,
		reg: reg,
		m:   m,
		stack: wire.Build(cfg, wire.Extra{
			Logger:        log,
			OnSharedAdmit: func(r risk.Reason) { m.QuarantineAdmitted(int(r)) },
			OnFleetAdmit:  func(r risk.Reason) { m.QuarantineAdmitted(int(r)) },
			Scored: func(id identity.ID, path string, v risk.Verdict, out authz.Outcome, now time.Time) {
				calib.Record(id, path, v.Score, v.Shared, out == authz.Quarantined || out == authz.Admitted, now)
			},
		}),
		live:  dashboard.NewTracker(),
		calib: calib,
	}
	engine, q := s.stack.Engine, s.stack.Quarantine
	s.m.RegisterSources(reg, metrics.Sources{
		TrackedIdentities: func() float64 { return float64(engine.Len()) },
		ActiveQuarantines: func() float64 { return float64(q.Len()) },
		RiskEvictions:     func() float64 { return float64(engine.Evictions()) },
		QuarantineEvictions: func() (float64, float64) {
			st := q.Stats()
			return float64(st.EvictedActive), float64(st.EvictedHistory)
		},
	})
	if ev := s.stack.Evidence; ev != nil {
		s.m.RegisterSources(reg, metrics.Sources{
			FlaggedFingerprints: func() float64 { return float64(ev.Count(time.Now())) },
		})
	}
	if tp := s.stack.Tarpit; tp != nil {
		s.m.RegisterSources(reg, metrics.Sources{Tarpit: func() (held, overCap float64) {
			h, o := tp.Stats()
			return float64(h), float64(o)
		}})
	}
	if rep := s.stack.Replica; rep != nil {
		s.m.RegisterSources(reg, metrics.Sources{
			SharedUp: func() float64 {
				if rep.Status().Connected {
					return 1
				}
				return 0
			},
			Shared: func() metrics.SharedCounts {
				st := rep.Stats()
				return metrics.SharedCounts{
					Batches: float64(st.Batches.Load()), Fallbacks: float64(st.Fallbacks.Load()),
					Merged: float64(st.Merged.Load()), Admitted: float64(st.Admitted.Load()),
					Mirrored: float64(st.Mirrored.Load()), Applied: float64(st.Applied.Load()),
					Resyncs: float64(st.Resyncs.Load()), Dropped: float64(st.Dropped.Load()),
					CallFailures: float64(st.CallFailures.Load()),
				}
			},
		})
	}
	if cfg.StateFile != "" {
		if err := s.restore(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// restore loads the quarantine from --state-file and proves the file can be
// written: a state file that cannot be written (no such directory,
// read-only volume) must stop startup, not surface at the first quarantine
// or, worse, lose them all at the next restart.
func (s *service) restore(ctx context.Context) error {
	q, path := s.stack.Quarantine, s.cfg.StateFile
	n, err := restoreState(ctx, path, q, s.log) // ctx: SIGTERM stops a long restore
	if err != nil {
		return err // names the file and what is wrong: never start empty by accident
	}
	s.log.Info("quarantine restored", "state_file", path, "entries", n, "active", q.Len())
	// Entries written under another --ipv6-prefix would match no client as
	// they are: a silent release. Regroup them to this one.
	logRegrouped(s.log, q.Regroup(s.cfg.IPv6Prefix, time.Now()))
	s.state = &persister{path: path, list: q, every: s.cfg.StateWriteInterval, m: s.m, log: s.log}
	if err := quarantine.SaveFile(path, q, time.Now()); err != nil {
		return fmt.Errorf("--state-file is not writable: %w", err)
	}
	return nil
}

// listeners are the service's open sockets; forwardAuth is nil unless
// --forward-auth-addr is set.
type listeners struct {
	grpc, http, forwardAuth net.Listener
	grpcOptions             []grpc.ServerOption // limits and TLS of the gRPC server
	limited                 []*listen.Listener  // the connection caps, for metrics
}

func (ls *listeners) close() {
	for _, x := range []net.Listener{ls.grpc, ls.http, ls.forwardAuth} {
		if x != nil {
			x.Close()
		}
	}
}

// servers are the service's servers; forwardAuth is nil unless
// --forward-auth-addr is set.
type servers struct {
	grpc              *grpc.Server
	health            *health.Server
	http, forwardAuth *http.Server
	dashboard         *dashboard.Handler
	ready             atomic.Bool // /readyz: listeners up and not shutting down
}

// newServers builds the gRPC server (Check, health, reflection), the HTTP
// side and forward-auth over the stack.
func (s *service) newServers(lis *listeners, stderr io.Writer) *servers {
	srv := &servers{}
	rec := recorder{s.m, s.live, newWatch(s.log, s.stack.Rules, 0)}
	checker := authz.NewServer(authz.ServerOptions{
		Policy: s.stack.Policy, Rules: s.stack.Rules, MaxSkew: s.cfg.ClockSkew, Recorder: rec, Logger: s.log,
		Tarpit: s.stack.Tarpit,
	})
	srv.grpc = checker.NewGRPCServer(lis.grpcOptions...) // Check through the lean codec
	srv.health = health.NewServer()
	healthpb.RegisterHealthServer(srv.grpc, srv.health)
	reflection.Register(srv.grpc)
	srv.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	srv.health.SetServingStatus(authzService, healthpb.HealthCheckResponse_NOT_SERVING)

	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	srv.dashboard = dashboard.New(dashboard.Options{
		Backend:        &backend{stack: s.stack, state: s.state, m: s.m},
		AdminToken:     adminToken(s.cfg, lis.http.Addr(), stderr),
		IPv6Prefix:     s.cfg.IPv6Prefix,
		NameIdentities: s.cfg.IdentityHeader != "" || s.cfg.IdentityJWTClaim != "" || s.cfg.Identity != config.IdentityAddress,
		Now:            time.Now,
		Metrics:        promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}),
		Ready: func() error {
			if !srv.ready.Load() {
				return errors.New("starting or shutting down")
			}
			return nil
		},
		Sharing:   s.sharing(),
		Fleets:    s.fleets(),
		Config:    configView(s.cfg),
		Logger:    s.log,
		Version:   buildVersion(),
		Tracker:   s.live,
		Mode:      s.cfg.Mode,
		MaxBanTTL: quarantine.MaxBanTTL,

		ShowIdentities: s.cfg.ShowIdentities,
		AllowedHosts:   s.cfg.HTTPAllowedHosts,
		BadToken:       s.m.AdminRejected,
		Warnings:       warnings(rec.watch),
		Fingerprints:   flaggedView(s.stack.Evidence),
		HoneypotURL:    s.cfg.HoneypotURL,
		Calibration:    func() any { return s.calib.Snapshot(time.Now()) },
	})
	srv.http = &http.Server{
		Handler:           srv.dashboard,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errLog,
	}
	if lis.forwardAuth != nil {
		srv.forwardAuth = &http.Server{
			Handler: authz.NewForwardAuth(authz.ForwardAuthOptions{
				Policy: s.stack.Policy, Rules: s.stack.Rules, Recorder: rec, Logger: s.log,
				Tarpit: s.stack.Tarpit,
			}),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          errLog,
		}
	}
	return srv
}

// run serves on lis until ctx is cancelled or a server fails, then shuts
// down in order.
func (s *service) run(ctx context.Context, lis *listeners, stderr io.Writer) error {
	if rep := s.stack.Replica; rep != nil {
		// Every standing quarantine from Redis before anything serves; an
		// unreachable Redis is retried in the background (Run).
		sctx, cancel := context.WithTimeout(ctx, sharedStartTimeout)
		err := rep.Start(sctx, time.Now())
		cancel()
		if err != nil {
			return err // names the setting: retrying cannot help
		}
	}
	srv := s.newServers(lis, stderr)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.grpc.Serve(lis.grpc); err != nil {
			return fmt.Errorf("grpc server: %w", err)
		}
		return nil
	})
	serveHTTP(g, "http server", srv.http, lis.http)
	serveHTTP(g, "forward-auth server", srv.forwardAuth, lis.forwardAuth)
	g.Go(func() error {
		return s.stack.Run(gctx, s.cfg.SweepInterval, time.Now, func(expired int) {
			for range expired {
				s.m.QuarantineReleased(metrics.ReleaseExpired)
			}
		})
	})
	if s.state != nil {
		g.Go(func() error { return s.state.Run(gctx) })
	}
	if s.cfg.Demo {
		g.Go(func() error { return runDemo(gctx, lis.grpc.Addr().String(), s.log) })
	}
	if rep := s.stack.Replica; rep != nil {
		// The replica outlives the servers: a ban made through the admin
		// API while the service drains is still written to Redis. The
		// shutdown stops it (stopShared) once nothing can change the list.
		repCtx, stop := context.WithCancel(context.WithoutCancel(gctx))
		s.stopShared = stop
		g.Go(func() error { return rep.Run(repCtx) })
	}

	srv.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	srv.health.SetServingStatus(authzService, healthpb.HealthCheckResponse_SERVING)
	srv.ready.Store(true)
	listening := []any{"grpc_addr", lis.grpc.Addr().String(), "http_addr", lis.http.Addr().String()}
	if lis.forwardAuth != nil {
		listening = append(listening, "forward_auth_addr", lis.forwardAuth.Addr().String())
	}
	s.log.Info("listening", listening...)

	<-gctx.Done()
	return s.shutdown(ctx, srv, g)
}

// serveHTTP serves hs on l in g; a nil server is not served.
func serveHTTP(g *errgroup.Group, name string, hs *http.Server, l net.Listener) {
	if hs == nil {
		return
	}
	g.Go(func() error {
		if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

// shutdown stops in order: health NOT_SERVING (Envoy stops sending), the
// drain delay, gRPC drained, the quarantine written, HTTP closed, and the
// quarantine written one last time.
func (s *service) shutdown(ctx context.Context, srv *servers, g *errgroup.Group) error {
	// One budget for the whole shutdown, so it ends inside the platform's
	// grace period (Kubernetes: terminationGracePeriodSeconds).
	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	srv.ready.Store(false)
	srv.health.Shutdown() // every service NOT_SERVING
	if ctx.Err() != nil && s.cfg.DrainDelay > 0 {
		// Keep answering Checks while Envoy's health checks and readiness
		// probes see NOT_SERVING and move traffic away; closing the listener
		// at once would turn in-flight traffic into fail-open passes.
		s.log.Info("shutting down: draining", "drain_delay", s.cfg.DrainDelay.String())
		time.Sleep(s.cfg.DrainDelay)
	} else {
		s.log.Info("shutting down")
	}
	stopped := make(chan struct{})
	go func() { srv.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(time.Until(deadline) - time.Second):
		// Long-lived streams (a health Watch) never end by themselves.
		s.log.Warn("grpc drain timed out; closing connections", "shutdown_timeout", s.cfg.ShutdownTimeout.String())
		srv.grpc.Stop()
		<-stopped
	}
	var flushErr error
	if s.state != nil {
		// First write as soon as no Check can admit anyone any more.
		flushErr = s.state.Flush()
	}
	httpDeadline := deadline
	if floor := time.Now().Add(time.Second); httpDeadline.Before(floor) {
		httpDeadline = floor // give open HTTP requests a moment even when late
	}
	shutCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), httpDeadline)
	defer cancel()
	srv.dashboard.Close() // event streams are never idle: end them first
	for _, hs := range []*http.Server{srv.forwardAuth, srv.http} {
		if hs == nil {
			continue
		}
		if err := hs.Shutdown(shutCtx); err != nil {
			s.log.Warn("http shutdown", "err", err)
		}
	}
	if s.stopShared != nil {
		s.stopShared() // the replica writes its last changes and stops
	}
	err := g.Wait()
	if s.state != nil {
		// And a last one for an operator's change that raced the shutdown.
		if ferr := s.state.Flush(); ferr != nil {
			err = errors.Join(err, ferr)
		} else if flushErr != nil {
			s.log.Info("quarantine state saved on the second try", "state_file", s.cfg.StateFile)
		}
	}
	s.log.Info("stopped")
	return err
}

// sharing returns the dashboard's view of the link to the other
// replicas; nil without --redis-addr.
func (s *service) sharing() func() dashboard.Sharing {
	rep := s.stack.Replica
	if rep == nil {
		return nil
	}
	return func() dashboard.Sharing {
		st := rep.Status()
		if st.Connected {
			return dashboard.Sharing{State: "shared"}
		}
		detail := "breaker " + st.Breaker
		if st.Err != "" {
			detail += ": " + st.Err
		}
		return dashboard.Sharing{State: "fallback", Detail: detail}
	}
}

// fleets returns the dashboard's view of the fleet detector; nil with
// --fleet-min-members 0.
func (s *service) fleets() func() dashboard.Fleets {
	d := s.stack.Fleet
	if d == nil {
		return nil
	}
	return func() dashboard.Fleets {
		st := d.Stats()
		out := dashboard.Fleets{Enabled: true, MinMembers: s.cfg.FleetMinMembers, Tracked: st.Tracked, Dropped: st.Dropped,
			Imported: st.Imported, Unshipped: st.Unshipped, Refused: st.Refused, Stale: st.Stale}
		for _, f := range d.Fleets() {
			v := dashboard.Fleet{Kind: f.Kind.String(), Signature: f.Signature, Size: f.Size}
			for _, id := range f.Members {
				v.Members = append(v.Members, dashboard.IdentityText(id))
			}
			out.Fleets = append(out.Fleets, v)
		}
		return out
	}
}

// newLogger builds the process logger from --log-level and --log-format.
func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
