// Package wire builds the decision stack from the one config.Config: the
// timing engine, the quarantine list, the volume limit, the allow and deny
// lists, the client rules and the policy over them. The service (serve),
// the backtest (replay) and the simulator (flowlock-sim eval) all build
// their decision path with Build, so the same settings decide the same way
// everywhere and none of them can leave a piece out. Domain packages never
// import config; this package is where the two meet.
package wire

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/crowd"
	"github.com/flowlock/flowlock/internal/fingerprint"
	"github.com/flowlock/flowlock/internal/fleet"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/redisstore"
	"github.com/flowlock/flowlock/internal/risk"
	"github.com/flowlock/flowlock/internal/shared"
	"github.com/flowlock/flowlock/internal/volume"
)

// Stack is the whole decision path of one process. Its parts are exported
// for the views that read them (the dashboard, metrics gauges, replay's
// report); decisions go through Policy.
type Stack struct {
	Engine     *risk.Engine
	Quarantine *quarantine.List
	Limiter    *volume.Limiter // nil without --volume-rate
	Lists      *quarantine.Lists
	Rules      authz.ClientRules
	Policy     *authz.Policy
	// Evidence is the record of quarantined TLS fingerprints; nil without
	// --fingerprint-header or with --fingerprint-flag-after 0. It is this
	// replica's own: replicas do not share it.
	Evidence *fingerprint.Evidence
	// Tarpit holds quarantined clients' answers under
	// --quarantine-action tarpit, shared by every transport; nil otherwise.
	Tarpit *authz.Tarpit
	// Replica links this stack to the other replicas through Redis; nil
	// without --redis-addr. The caller starts it (Start) and runs it
	// (Run); until then it decides on local state.
	Replica *shared.Replica
	// Fleet finds fleets of identities that share one schedule or script
	// and quarantines their members (reason fleet) at every Sweep; nil
	// with --fleet-min-members 0.
	Fleet *fleet.Detector
}

// Extra is what a stack needs beyond the configuration: things that are
// not settings of the service.
type Extra struct {
	// Logger receives the policy's quarantine and ban lines; nil discards.
	Logger *slog.Logger
	// OnSharedAdmit is told of each quarantine a Replica admits from the
	// merged stream (off the Check path, so no Check record counts it);
	// nil tells nobody.
	OnSharedAdmit func(risk.Reason)
	// OnFleetAdmit is told of each quarantine the fleet detector starts
	// (off the Check path, like OnSharedAdmit); nil tells nobody.
	OnFleetAdmit func(risk.Reason)
	// Shards overrides the timing engine's shard count; 0 keeps its
	// default. The simulator runs one identity per stack, where sharding
	// only costs set-up time.
	Shards int
	// FleetQueue is the fleet detector's queue (fleet.Options.QueueSize);
	// 0 keeps its default, sized for the service, whose Run drains it
	// several times a second. The simulator and replay drain it only at
	// each sweep of virtual time, and pass fleet.SweepQueueSize.
	FleetQueue int
	// Scored is the policy's Options.Scored (calibration's recorder); nil
	// records nothing.
	Scored func(id identity.ID, path string, v risk.Verdict, out authz.Outcome, now time.Time)
}

// Build returns the decision stack cfg describes. cfg must have passed
// config.Validate (config.Load does that).
func Build(cfg config.Config, x Extra) *Stack {
	ro := risk.Options{
		MaxClients:         cfg.MaxClients,
		Threshold:          uint8(cfg.RiskThreshold),
		ChallengeThreshold: uint8(cfg.ChallengeThreshold),
		Confirm:            cfg.Confirm,
		Shards:             x.Shards,
	}
	s := &Stack{
		Engine: risk.New(ro),
		Quarantine: quarantine.New(quarantine.Options{
			BaseTTL:      cfg.QuarantineTTL,
			MaxTTL:       cfg.QuarantineMaxTTL,
			Factor:       cfg.QuarantineFactor,
			StrikeWindow: cfg.StrikeWindow,
			// The list holds as many identities as the engine tracks; the
			// state file's size cap follows from it.
			MaxEntries: cfg.MaxClients,
		}),
		Limiter: volume.New(volume.Options{Rate: cfg.VolumeRate, Burst: cfg.VolumeBurst, MaxClients: cfg.MaxClients}),
		Lists:   quarantine.NewLists(cfg.Allow, cfg.Deny),
		Rules: authz.ClientRules{
			TrustedProxies: cfg.TrustedProxies,
			XFFTrustedHops: cfg.XFFTrustedHops,
			IdentityHeader: cfg.IdentityHeader,
			IPv6Prefix:     cfg.IPv6Prefix,
		},
	}
	s.Rules.ClaimNamespace, s.Rules.ClaimPath = JWTNamespace, cfg.ClaimPath()
	s.Rules.FingerprintHeader = cfg.FingerprintHeader
	s.Rules.Compose, _ = authz.ParseCompose(cfg.Identity) // validated by config
	if cfg.FingerprintHeader != "" {
		s.Evidence = fingerprint.New(fingerprint.Options{
			FlagAfter: cfg.FingerprintFlagAfter, Window: cfg.FingerprintWindow, CalmLimit: cfg.FingerprintCalmLimit,
		})
	}
	var observer authz.Observer // nil: the engine
	if cfg.RedisAddr != "" {
		s.Replica = shared.New(shared.Options{
			Redis:      RedisOptions(cfg),
			Engine:     s.Engine,
			Quarantine: s.Quarantine,
			Logger:     x.Logger,
			OnAdmit:    x.OnSharedAdmit,
		})
		observer = s.Replica
	}
	if cfg.FleetMinMembers > 0 {
		s.Fleet = fleet.New(fleet.Options{MinMembers: cfg.FleetMinMembers, Admit: s.admitFleet(x.OnFleetAdmit), Outbox: fleetOutbox(cfg), Skew: cfg.ClockSkew, QueueSize: x.FleetQueue})
	}
	if s.Replica != nil {
		s.Replica.SetFleet(s.Fleet) // the replicas exchange fleet notes
	}
	mode, _ := authz.ParseMode(cfg.Mode) // validated by config
	action, _ := authz.ParseAction(cfg.QuarantineAction)
	if action == authz.ActionTarpit {
		s.Tarpit = authz.NewTarpit(cfg.TarpitDelay, cfg.TarpitMaxHeld)
	}
	s.Policy = authz.NewPolicy(authz.Options{
		Engine:       s.Engine,
		Observer:     observer,
		Quarantine:   s.Quarantine,
		Lists:        s.Lists,
		Volume:       s.Limiter,
		Mode:         mode,
		ExcludePaths: cfg.ExcludePaths,
		Crowd:        crowd.New(0, 0),
		Evidence:     s.Evidence,
		Logger:       x.Logger,
		Fleet:        s.Fleet,
		Action:       action,
		Scored:       x.Scored,
	})
	if s.Replica != nil {
		policy := s.Policy
		s.Replica.SetAdmitter(func(id identity.ID, v risk.Verdict, at time.Time) bool {
			// Timing is keyed by identity: the allow list applies when the
			// identity is an address.
			addr, _ := id.Addr()
			_, admitted, _ := policy.Admit(id, addr, v, at)
			return admitted
		})
	}
	return s
}

// JWTNamespace is the dynamic metadata namespace of Envoy's jwt_authn
// filter, where --identity-jwt-claim is read: ext_authz forwards it when
// its metadata_context_namespaces lists it.
const JWTNamespace = "envoy.filters.http.jwt_authn"

// RedisOptions returns the shared store's options from cfg.
func RedisOptions(cfg config.Config) redisstore.Options {
	return redisstore.Options{
		Addrs:     cfg.RedisAddrs(),
		Username:  cfg.RedisUsername,
		Password:  cfg.RedisPassword.Reveal(),
		TLS:       cfg.RedisTLS,
		CAFile:    cfg.RedisCAFile,
		KeyPrefix: cfg.RedisKeyPrefix,
	}
}

// Sweep drops what has ended by now: quarantines past their time, timing
// state of idle identities, and idle volume buckets. It returns how many
// quarantines expired. The service calls it on a ticker, replay and the
// simulator at the same interval in virtual time.
func (s *Stack) Sweep(now time.Time) (expired int) {
	expired = s.Quarantine.Sweep(now)
	s.Engine.Sweep(now)
	s.Limiter.Sweep(now) // nil-safe
	if s.Replica != nil {
		s.Replica.Sweep(now)
	}
	s.Fleet.Sweep(now) // nil-safe
	return expired
}

// admitFleet returns the fleet detector's Admit: the policy's, with the
// member's own score, so that the allow list holds and the quarantine
// replicates like any other. A member labelled shared (many people behind
// one address) is never quarantined for a fleet, as it is never for timing.
func (s *Stack) admitFleet(told func(risk.Reason)) func(identity.ID, *fleet.Fleet, time.Time) bool {
	return func(id identity.ID, _ *fleet.Fleet, now time.Time) bool {
		v, _ := s.Engine.Peek(id, now)
		if v.Shared {
			return false
		}
		v.Reason, v.Confirmed = risk.ReasonFleet, true
		addr, _ := id.Addr()
		_, admitted, _ := s.Policy.Admit(id, addr, v, now)
		if admitted && told != nil {
			told(risk.ReasonFleet)
		}
		return admitted
	}
}

// Run calls Sweep every interval until ctx is done, and passes each count
// of expired quarantines to onExpired (nil ignores them). It returns nil
// when ctx ends.
func (s *Stack) Run(ctx context.Context, every time.Duration, now func() time.Time, onExpired func(int)) error {
	if every <= 0 {
		return errors.New("sweep interval must be positive")
	}
	tk := time.NewTicker(every)
	defer tk.Stop()
	var drain sync.WaitGroup
	defer drain.Wait()
	drain.Go(func() { s.Fleet.Run(ctx) }) // between sweeps: nil-safe
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
			if n := s.Sweep(now()); onExpired != nil {
				onExpired(n)
			}
		}
	}
}

// fleetOutbox is the fleet detector's outbox: the notes it keeps for the
// other replicas when there are replicas to share with.
func fleetOutbox(cfg config.Config) int {
	if cfg.RedisAddr == "" {
		return 0
	}
	return fleet.DefaultOutbox
}
