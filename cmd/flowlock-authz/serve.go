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

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/flowlock/flowlock/dashboard"
	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/metrics"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/risk"
	"github.com/flowlock/flowlock/internal/volume"
	"github.com/flowlock/flowlock/internal/wire"
)

// authzService is the gRPC health service name of the Check API, so that a
// health check can ask about it by name as well as about the server ("").
const authzService = "envoy.service.auth.v3.Authorization"

// serve runs the service until ctx is cancelled, then shuts down in order:
// health NOT_SERVING (Envoy stops sending), gRPC drained, HTTP closed, the
// quarantine written one last time.
func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := config.Load(args, getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			config.Usage(stderr)
		}
		return err
	}
	log := newLogger(cfg, stderr)
	log.Info("starting", "version", buildVersion(), "mode", cfg.Mode, "grpc_addr", cfg.GRPCAddr, "http_addr", cfg.HTTPAddr)
	startExposure(cfg, args, log)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg, buildVersion())

	engine := risk.New(wire.Risk(cfg))
	q := quarantine.New(wire.Quarantine(cfg))
	m.RegisterGauges(reg,
		func() float64 { return float64(engine.Len()) },
		func() float64 { return float64(q.Len()) },
		func() float64 { return float64(engine.Evictions()) })

	var state *persister
	if cfg.StateFile != "" {
		n, err := quarantine.LoadFile(cfg.StateFile, q, time.Now())
		if err != nil {
			return err // names the file and what is wrong: never start empty by accident
		}
		log.Info("quarantine restored", "state_file", cfg.StateFile, "entries", n, "active", q.Len())
		// Entries written under another --ipv6-prefix would match no client
		// as they are: a silent release. Regroup them to this one.
		logRegrouped(log, q.Regroup(cfg.IPv6Prefix, time.Now()))
		state = &persister{path: cfg.StateFile, list: q, every: cfg.StateWriteInterval, m: m, log: log}
		// Write once now: a state file that cannot be written (no such
		// directory, read-only volume) must stop startup, not surface at the
		// first quarantine or, worse, lose them all at the next restart.
		if err := quarantine.SaveFile(cfg.StateFile, q, time.Now()); err != nil {
			return fmt.Errorf("--state-file is not writable: %w", err)
		}
	}

	limiter := volume.New(wire.Volume(cfg))
	policy := authz.NewPolicy(authz.Options{
		Engine:       engine,
		Quarantine:   q,
		Lists:        wire.Lists(cfg),
		Volume:       limiter,
		Mode:         wire.Mode(cfg),
		ExcludePaths: cfg.ExcludePaths,
		Logger:       log,
	})
	rules := wire.Rules(cfg)
	live := dashboard.NewTracker()
	rec := watchedRecorder{recorder{m, live}, identity.NewWatch(log, 0)}
	checker := authz.NewServer(authz.ServerOptions{
		Policy: policy, Rules: rules, MaxSkew: cfg.ClockSkew, Recorder: rec, Logger: log,
	})

	grpcServer := grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(4<<20),
	)
	healthSrv := health.NewServer()
	authv3.RegisterAuthorizationServer(grpcServer, checker)
	healthpb.RegisterHealthServer(grpcServer, healthSrv)
	reflection.Register(grpcServer)
	healthSrv.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthSrv.SetServingStatus(authzService, healthpb.HealthCheckResponse_NOT_SERVING)

	grpcLis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("--grpc-addr %s: %w", cfg.GRPCAddr, err)
	}
	defer grpcLis.Close()
	httpLis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("--http-addr %s: %w", cfg.HTTPAddr, err)
	}
	defer httpLis.Close()

	var faLis net.Listener
	if cfg.ForwardAuthAddr != "" {
		if faLis, err = net.Listen("tcp", cfg.ForwardAuthAddr); err != nil {
			return fmt.Errorf("--forward-auth-addr %s: %w", cfg.ForwardAuthAddr, err)
		}
		defer faLis.Close()
	}

	var ready atomic.Bool
	backend := &backend{engine: engine, q: q, policy: policy, state: state, m: m}
	httpServer := &http.Server{
		Handler: dashboard.New(dashboard.Options{
			Backend:        backend,
			AdminToken:     adminToken(cfg, httpLis.Addr(), stderr),
			IPv6Prefix:     cfg.IPv6Prefix,
			NameIdentities: cfg.IdentityHeader != "",
			Now:            time.Now,
			Metrics:        promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
			Ready: func() error {
				if !ready.Load() {
					return errors.New("starting or shutting down")
				}
				return nil
			},
			Config:  func() any { return cfg.Redacted() },
			Logger:  log,
			Version: buildVersion(),
			Tracker: live,
			Mode:    cfg.Mode,

			ShowIdentities: cfg.ShowIdentities,
			AllowedHosts:   cfg.HTTPAllowedHosts,
			BadToken:       m.AdminRejected,
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := grpcServer.Serve(grpcLis); err != nil {
			return fmt.Errorf("grpc server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := httpServer.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		return q.Run(gctx, cfg.SweepInterval, time.Now, func(expired int) {
			for range expired {
				m.QuarantineReleased(metrics.ReleaseExpired)
			}
			engine.Sweep(time.Now())
			limiter.Sweep(time.Now())
		})
	})
	if state != nil {
		g.Go(func() error { return state.Run(gctx) })
	}
	var faServer *http.Server
	if faLis != nil {
		faServer = &http.Server{
			Handler: authz.NewForwardAuth(authz.ForwardAuthOptions{
				Policy: policy, Rules: rules, Recorder: rec, Logger: log,
			}),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		g.Go(func() error {
			if err := faServer.Serve(faLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("forward-auth server: %w", err)
			}
			return nil
		})
	}
	if cfg.Demo {
		g.Go(func() error { return runDemo(gctx, grpcLis.Addr().String(), log) })
	}

	healthSrv.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthSrv.SetServingStatus(authzService, healthpb.HealthCheckResponse_SERVING)
	ready.Store(true)
	listening := []any{"grpc_addr", grpcLis.Addr().String(), "http_addr", httpLis.Addr().String()}
	if faLis != nil {
		listening = append(listening, "forward_auth_addr", faLis.Addr().String())
	}
	log.Info("listening", listening...)

	<-gctx.Done()
	// One budget for the whole shutdown, so it ends inside the platform's
	// grace period (Kubernetes: terminationGracePeriodSeconds).
	deadline := time.Now().Add(cfg.ShutdownTimeout)
	ready.Store(false)
	healthSrv.Shutdown() // every service NOT_SERVING
	if ctx.Err() != nil && cfg.DrainDelay > 0 {
		// Keep answering Checks while Envoy's health checks and readiness
		// probes see NOT_SERVING and move traffic away; closing the listener
		// at once would turn in-flight traffic into fail-open passes.
		log.Info("shutting down: draining", "drain_delay", cfg.DrainDelay.String())
		time.Sleep(cfg.DrainDelay)
	} else {
		log.Info("shutting down")
	}
	stopped := make(chan struct{})
	go func() { grpcServer.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(time.Until(deadline) - time.Second):
		// Long-lived streams (a health Watch) never end by themselves.
		log.Warn("grpc drain timed out; closing connections", "shutdown_timeout", cfg.ShutdownTimeout.String())
		grpcServer.Stop()
		<-stopped
	}
	var flushErr error
	if state != nil {
		// First write as soon as no Check can admit anyone any more.
		flushErr = state.Flush()
	}
	httpDeadline := deadline
	if floor := time.Now().Add(time.Second); httpDeadline.Before(floor) {
		httpDeadline = floor // give open HTTP requests a moment even when late
	}
	shutCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), httpDeadline)
	defer cancel()
	for _, hs := range []*http.Server{faServer, httpServer} {
		if hs == nil {
			continue
		}
		if err := hs.Shutdown(shutCtx); err != nil {
			log.Warn("http shutdown", "err", err)
		}
	}
	err = g.Wait()
	if state != nil {
		// And a last one for an operator's change that raced the shutdown.
		if ferr := state.Flush(); ferr != nil {
			err = errors.Join(err, ferr)
		} else if flushErr != nil {
			log.Info("quarantine state saved on the second try", "state_file", cfg.StateFile)
		}
	}
	log.Info("stopped")
	return err
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
