// Package authz decides, for one request, whether Flow Lock lets it through,
// and speaks that decision to proxies: Envoy's ext_authz v3 gRPC Check here,
// HTTP forward-auth elsewhere. The decision itself (Policy.Decide) knows no
// transport, so the live service, replay and the simulator decide alike.
package authz

import (
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/flowlock/flowlock/internal/crowd"
	"github.com/flowlock/flowlock/internal/fingerprint"
	"github.com/flowlock/flowlock/internal/fleet"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/risk"
	"github.com/flowlock/flowlock/internal/volume"
)

// Mode says whether decisions are enforced.
type Mode uint8

const (
	// Enforce denies quarantined and deny-listed clients.
	Enforce Mode = iota
	// Shadow computes, records and counts every decision, quarantines
	// included, but always allows: for trying Flow Lock on live traffic.
	Shadow
)

// String returns "enforce" or "shadow".
func (m Mode) String() string {
	if m == Shadow {
		return "shadow"
	}
	return "enforce"
}

// ParseMode reads "enforce" or "shadow".
func ParseMode(s string) (Mode, bool) {
	switch s {
	case "enforce":
		return Enforce, true
	case "shadow":
		return Shadow, true
	}
	return Enforce, false
}

// Outcome is what the policy concluded about a request, before the mode is
// applied, and so why a check was decided the way it was: its String is the
// reason label of flowlock_authz_checks_total.
type Outcome uint8

// Outcomes of Decide.
const (
	Allowed       Outcome = iota // not quarantined, score below the line
	Quarantined                  // already quarantined: denied with the time left
	Admitted                     // this request confirmed a bot: quarantined now, denied
	DenyListed                   // the client address is on the deny list
	NoIdentity                   // no client could be determined: allowed unscored
	VolumeLimited                // over the per-identity volume limit (--volume-rate): denied, not quarantined

	// The transports record two more outcomes that Decide never returns.

	ExcludedPath // allowed, and the path is left out of timing (--exclude-path)
	Failed       // Flow Lock itself failed; the proxy applies its failure mode

	numOutcomes
)

// Outcomes returns every outcome, in order of value, so that metric label
// children can be resolved once at start-up.
func Outcomes() []Outcome { return values(numOutcomes) }

// values returns the n values 0 … n-1 of an enumeration.
func values[T ~uint8](n T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = T(i)
	}
	return out
}

// String returns the metric label value of o.
func (o Outcome) String() string {
	switch o {
	case Quarantined:
		return "quarantined"
	case Admitted:
		return "admitted"
	case DenyListed:
		return "denylist"
	case NoIdentity:
		return "no_identity"
	case VolumeLimited:
		return "volume"
	case ExcludedPath:
		return "excluded_path"
	case Failed:
		return "error"
	default:
		return "allowed"
	}
}

// Denies reports whether o denies the request in enforce mode.
func (o Outcome) Denies() bool {
	return o == Quarantined || o == Admitted || o == DenyListed || o == VolumeLimited
}

// Request is one request as the policy sees it.
type Request struct {
	Client Client    // identity and address
	Path   string    // request path, query allowed; used for --exclude-path
	Now    time.Time // when the request arrived
	// UserAgent is the request's User-Agent, evidence of how many clients
	// share the identity (see Options.Crowd); "" when unknown.
	UserAgent string
}

// Decision is the policy's answer for one request.
type Decision struct {
	Outcome Outcome
	// Allow is what the proxy must do: false only for a denying outcome in
	// enforce mode.
	Allow bool
	// Score is the client's risk score (0-100) after this request, and
	// Reason the component behind it ("none" below the watch band) or, for
	// a quarantined client, the reason it was quarantined.
	Score  uint8
	Reason string
	// Detector is the scoring component behind Score (risk.ReasonNone below
	// the watch band); for an Admitted outcome, what sent the client to
	// quarantine.
	Detector risk.Reason
	// RetryAfter is the whole seconds until the quarantine ends (>= 1) for
	// denying outcomes, 0 otherwise.
	RetryAfter int
	// Excluded is true when the path was left out of timing.
	Excluded bool
	// Prior is set when the client's flagged fingerprint confirmed it
	// before Confirm consecutive evaluations (see Options.Evidence).
	Prior bool
	// Action is how a quarantined client is answered (--quarantine-action):
	// ActionDeny except for a Quarantined or Admitted outcome in enforce
	// mode under another action. It is never set for a request that is
	// allowed, so a calm client is never routed to the decoy or held.
	Action Action
}

// Observer records the time of a request for scoring and returns the
// client's verdict after it. risk.Engine is one. With state shared across
// replicas, the observer ships the time to be merged with the other
// replicas' and answers from the merged state, admitting to quarantine
// itself (see Policy.Admit), so its verdicts never ask the Check to.
type Observer interface {
	Observe(id identity.ID, now time.Time) risk.Verdict
}

// Options configure a Policy.
type Options struct {
	Engine *risk.Engine
	// Observer times each request; nil means Engine.
	Observer   Observer
	Quarantine *quarantine.List
	Lists      *quarantine.Lists // nil means no allow or deny list
	// Volume is the per-identity volume limit; nil means none. It applies
	// to clients that timing lets through, allow-listed ones included:
	// volume is a separate control from behaviour.
	Volume *volume.Limiter
	Mode   Mode
	// ExcludePaths are path prefixes left out of timing (pollers, health
	// checks): requests to them are still decided, but do not feed the
	// rhythm that the score is about. A prefix matches whole segments:
	// "/api/poll" matches "/api/poll" and "/api/poll/7", not "/api/polls".
	ExcludePaths []string
	// DenyListRetryAfter is the Retry-After sent to deny-listed clients;
	// 0 means one hour.
	DenyListRetryAfter time.Duration
	// Crowd counts distinct user agents per identity; nil means none. Three
	// or more within its window let the engine label the identity shared
	// sooner than timing alone would, when timing agrees (risk.Engine.Crowd).
	Crowd  *crowd.Agents
	Logger *slog.Logger // nil discards
	// Evidence is the record of quarantined fingerprints
	// (--fingerprint-flag-after); nil keeps none. A client whose
	// fingerprint is flagged is confirmed on its first evaluation at or
	// over the threshold instead of Confirm consecutive ones: a prior,
	// never a ban by itself.
	Evidence *fingerprint.Evidence
	// Fleet is told of every timed request, to find fleets off the Check
	// path; nil tells nothing.
	Fleet *fleet.Detector
	// Action is how quarantined clients are answered in enforce mode;
	// the zero value, ActionDeny, answers 403 with Retry-After. The deny
	// list and the volume limit always deny: only a client that timing
	// caught is worth deceiving.
	Action Action
	// Scored is told of every request timing scored (not on an excluded
	// path), with the verdict after it and the request's outcome (a
	// quarantined client's hours are no evidence of innocence), for
	// calibration's recorder; nil tells nobody. It runs on the Check path
	// and must not block.
	Scored func(id identity.ID, path string, v risk.Verdict, out Outcome, now time.Time)
}

// Policy is the decision shared by every transport. It is safe for
// concurrent use and holds no state of its own beyond its options: the
// timing state is in risk.Engine, the quarantine in quarantine.List.
type Policy struct {
	engine   *risk.Engine
	observer Observer
	q        *quarantine.List
	lists    *quarantine.Lists
	volume   *volume.Limiter
	mode     Mode
	exclude  []string
	denyWait int
	crowd    *crowd.Agents
	action   Action
	log      *slog.Logger
	evidence *fingerprint.Evidence
	fleet    *fleet.Detector
	scored   func(id identity.ID, path string, v risk.Verdict, out Outcome, now time.Time)
}

// NewPolicy returns a policy over the given engine and quarantine.
func NewPolicy(o Options) *Policy {
	lists := o.Lists
	if lists == nil {
		lists = quarantine.NewLists(nil, nil)
	}
	wait := o.DenyListRetryAfter
	if wait <= 0 {
		wait = time.Hour
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	observer := o.Observer
	if observer == nil {
		observer = o.Engine
	}
	return &Policy{
		engine:   o.Engine,
		observer: observer,
		q:        o.Quarantine,
		lists:    lists,
		volume:   o.Volume,
		mode:     o.Mode,
		exclude:  append([]string(nil), o.ExcludePaths...),
		denyWait: int((wait + time.Second - 1) / time.Second),
		crowd:    o.Crowd,
		action:   o.Action,
		log:      log.With("component", "policy"),
		evidence: o.Evidence,
		fleet:    o.Fleet,
		scored:   o.Scored,
	}
}

// Mode returns the policy's mode.
func (p *Policy) Mode() Mode { return p.mode }

// Decide records one request and decides it. It does not allocate unless the
// request admits a new quarantine.
func (p *Policy) Decide(r Request) Decision {
	d := p.decide(r)
	d.Allow = !d.Outcome.Denies() || p.mode == Shadow
	if !d.Allow && (d.Outcome == Quarantined || d.Outcome == Admitted) {
		d.Action = p.action
	}
	return d
}

func (p *Policy) decide(r Request) Decision {
	id, addr := r.Client.ID, r.Client.Addr
	if id.IsZero() {
		return Decision{Outcome: NoIdentity, Reason: "none"}
	}
	if addr.IsValid() && p.lists.Denied(addr) {
		return Decision{Outcome: DenyListed, Reason: "denylist", RetryAfter: p.denyWait}
	}

	// Time every request, even a quarantined client's: the dashboard shows
	// its rhythm, and a bot that keeps its rhythm through the quarantine is
	// re-admitted (with a longer TTL) the moment it ends.
	var v risk.Verdict
	excluded := p.excluded(r.Path)
	if excluded {
		v, _ = p.engine.Peek(id, r.Now)
	} else {
		v = p.observer.Observe(id, r.Now)
		v.Shared = p.noteCrowd(r, v)
		p.fleet.Note(id, r.Path, r.Now) // fleet detection: a non-blocking hand-over
	}
	d := Decision{Score: v.Score, Reason: v.Reason.String(), Detector: v.Reason, Excluded: excluded}
	if p.scored != nil && !excluded {
		defer func() { p.scored(id, r.Path, v, d.Outcome, r.Now) }() // once the outcome is known
	}

	fp := r.Client.Fingerprint
	if q, ok := p.quarantined(id, addr, r.Now); ok {
		d.Outcome, d.Reason, d.RetryAfter = Quarantined, q.Reason, q.RetryAfter
		if fp != "" && r.Now.Sub(q.Since) < evidenceAfterAdmit {
			// Admitted elsewhere (a replica's merged stream, another
			// transport): the fingerprint is evidence all the same.
			p.evidence.Quarantined(fp, id, r.Now)
		}
		return d
	}
	if !v.Confirmed && priorConfirms(v) && p.evidence.Flagged(fp, r.Now) {
		v.Confirmed, d.Prior = true, true
	}
	if v.Confirmed {
		if e, admitted, ok := p.Admit(id, addr, v, r.Now); ok {
			d.Reason, d.RetryAfter = e.Reason, e.RetryAfterSeconds(r.Now)
			d.Outcome = Quarantined // a concurrent request admitted it first: count it once
			if admitted {
				d.Outcome = Admitted
				p.evidence.Quarantined(fp, id, r.Now)
				if d.Prior {
					p.log.Info("confirmed early by a flagged fingerprint", "identity", id.Masked(), "fingerprint", fp, "score", v.Score)
				}
			}
			return d
		}
	}
	if calm(v) {
		p.evidence.Calm(fp, id, r.Now)
	}
	if ok, wait := p.volume.Allow(id, r.Now); !ok {
		d.Outcome, d.Reason = VolumeLimited, "volume"
		d.RetryAfter = int((wait + time.Second - 1) / time.Second)
		return d
	}
	d.Outcome = Allowed
	return d
}

// Crowd evidence is noted only for identities it could change: timed long
// enough to be labelled, not labelled yet, and scoring below the watch band
// (risk.Engine.Crowd checks the timing again).
const (
	crowdMinRequests = 32
	crowdMinAgents   = 3
)

// noteCrowd counts r's user agent for its identity and, when enough
// distinct ones have been seen, offers the engine the crowd evidence. It
// returns whether the identity is labelled shared.
func (p *Policy) noteCrowd(r Request, v risk.Verdict) bool {
	if p.crowd == nil || v.Shared || v.Reason != risk.ReasonNone || v.Requests < crowdMinRequests {
		return v.Shared
	}
	if p.crowd.Note(r.Client.ID, r.UserAgent, r.Now) < crowdMinAgents {
		return false
	}
	return p.engine.Crowd(r.Client.ID, r.Now)
}

// Admit quarantines id for the confirmed verdict v at now, unless addr is
// on the allow list (ok false). admitted reports that this call started the
// quarantine; false means it was already quarantined, and e is that
// quarantine.
func (p *Policy) Admit(id identity.ID, addr netip.Addr, v risk.Verdict, now time.Time) (e quarantine.Entry, admitted, ok bool) {
	if addr.IsValid() && p.lists.Allowed(addr) {
		return quarantine.Entry{}, false, false
	}
	e = p.q.Admit(id, now, v.Reason.String(), v.Score)
	if e.Since.Before(now) {
		return e, false, true
	}
	p.log.Info("quarantined", "identity", id.Masked(), "score", v.Score, "reason", e.Reason,
		"strikes", e.Strikes, "ttl", e.Until.Sub(e.Since).String(), "mode", p.mode.String())
	return e, true, true
}

// What a flagged fingerprint changes, and what makes an identity calm.
const (
	// priorConfirm is how many consecutive evaluations at or over the
	// threshold confirm a client whose fingerprint is flagged: the score
	// must still be there, only the wait for Confirm is cut.
	priorConfirm = 1
	// calmAfter and calmEvery: an identity is counted calm for its
	// fingerprint after this many requests with a score below the
	// challenge band (checked every calmEvery requests, so that most
	// Checks never touch the evidence).
	calmAfter = 50
	calmEvery = 25
)

// evidenceAfterAdmit is how soon after a quarantine began a refused request
// still records its fingerprint as evidence: with shared state the replica
// admits from the merged stream, off the Check, and the first requests it
// refuses are where the fingerprint is known.
const evidenceAfterAdmit = 5 * time.Second

// priorConfirms reports whether v would be confirmed with a prior: its
// latest evaluations reached the threshold, and the stream is not one of
// many humans behind an address (which timing never confirms).
func priorConfirms(v risk.Verdict) bool {
	return v.Consecutive >= priorConfirm && !v.Shared
}

// calm reports whether v shows an identity long seen below the challenge
// band: evidence that its fingerprint is carried by people.
func calm(v risk.Verdict) bool {
	return v.Requests >= calmAfter && v.Requests%calmEvery == 0 && v.Reason == risk.ReasonNone && v.Consecutive == 0
}

// excluded reports whether path falls under an --exclude-path prefix.
// Only a path in canonical form can be excluded: "/healthz/../data" or
// "/healthz/%2e%2e/data" may reach a timed route once the upstream resolves
// it, so a bot could hide its rhythm behind them. Such paths are timed.
func (p *Policy) excluded(path string) bool {
	if len(p.exclude) == 0 {
		return false
	}
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	if !canonical(path) {
		return false
	}
	for _, prefix := range p.exclude {
		if !strings.HasPrefix(path, prefix) {
			continue
		}
		if len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/' {
			return true
		}
	}
	return false
}

// canonical reports whether path is absolute and has no empty, "." or ".."
// segment, no percent-encoding and no backslash (a trailing slash is fine).
// It does not allocate.
func canonical(path string) bool {
	if path == "" || path[0] != '/' || strings.ContainsAny(path, "%\\") {
		return false
	}
	for rest := path[1:]; rest != ""; {
		seg := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
			if seg == "" {
				return false // "//"
			}
		} else {
			rest = ""
		}
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// quarantined reports what a deny says of the quarantine that refuses this
// request, and counts the refusal in its Hits (in shadow mode,
// what would be refused), without building the quarantine's Entry: a flood
// of quarantined bots makes this call on every request. The
// allow list wins over a quarantine it meets (one restored from a state
// file written before the address was allowed): allow-listed clients are
// never quarantined: an allowed request is neither refused nor counted, and
// the allow list is asked first, a lock-free prefix lookup.
func (p *Policy) quarantined(id identity.ID, addr netip.Addr, now time.Time) (quarantine.Refusal, bool) {
	if p.lists.HasAllow() && addr.IsValid() && p.lists.Allowed(addr) {
		return quarantine.Refusal{}, false
	}
	return p.q.Refuse(id, now)
}

// ErrAllowListed is Ban's answer for a client on the allow list.
var ErrAllowListed = errors.New("identity is on the allow list (--allow), whose clients are never quarantined; take it off the list first")

// Ban quarantines id by hand for ttl (0 means the base TTL). It refuses a
// client on the allow list with ErrAllowListed: such a ban would never be
// enforced (see decide), and an operator should learn that now, not from a
// bot that keeps getting through.
func (p *Policy) Ban(id identity.ID, ttl time.Duration, reason string, now time.Time) (quarantine.Entry, error) {
	if addr, ok := id.Addr(); ok {
		bits := addr.BitLen()
		if b, v6 := id.IPv6Bits(); v6 {
			bits = b
		}
		if p.lists.AllowedPrefix(netip.PrefixFrom(addr, bits)) {
			return quarantine.Entry{}, ErrAllowListed
		}
	}
	e := p.q.Ban(id, now, ttl, reason)
	p.log.Info("banned", "identity", id.Masked(), "reason", reason, "ttl", e.Until.Sub(now).String())
	return e, nil
}

// Release ends id's quarantine by hand and forgets its timing, so the
// client starts over instead of being re-admitted by its old rhythm on the
// next request. Its strike history is kept: if it comes back as a bot it
// is quarantined for longer.
func (p *Policy) Release(id identity.ID, now time.Time) bool {
	// Forget first: a request landing between the two steps must not be
	// re-admitted from the rhythm the operator just forgave.
	p.engine.Forget(id)
	ok := p.q.Release(id, now)
	if ok {
		p.log.Info("released", "identity", id.Masked())
	}
	return ok
}

// Lists returns the allow and deny lists in force.
func (p *Policy) Lists() *quarantine.Lists { return p.lists }

// ClientAddr is a convenience for adapters: the address from a string that
// may carry a port, or the zero Addr.
func ClientAddr(s string) netip.Addr {
	a, _ := parseForwarded(strings.TrimSpace(s))
	return a
}
