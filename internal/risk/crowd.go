package risk

import (
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// Crowd evidence: the transport saw several distinct clients (user agents)
// behind one identity. It lets the shared label be set sooner than timing
// alone allows (the rate and no-pause tests need minutes of a busy office),
// but only when timing agrees: a user agent is one header a bot can rotate
// for free, so it never outweighs a regular rhythm.
const (
	// crowdMinIntervals is how many intervals must have been seen: enough
	// for the EW burstiness to mean something, and for a periodic bot to
	// have scored into the challenge band before it could ask for the label.
	crowdMinIntervals = 32
	// crowdMinAEW is the burstiness the merged stream must reach: not more
	// regular than a Poisson mix (the timing-only test's sharedMinAEW).
	// A timer with 20 % jitter sits near −0.8.
	crowdMinAEW = sharedMinAEW
	// crowdMinRate is the 60 s rate (req/s) the stream must keep: several
	// people, or one busy one; the other tests keep the busy one out.
	crowdMinRate = 0.3
	// crowdFor is how long a label set by crowd evidence holds unless the
	// timing keeps it (labelShared's renewal) or the evidence comes again.
	// Short, so a bot that earned it with a show of user agents and a
	// random rhythm is timed again soon after it turns regular.
	crowdFor = int64(2 * time.Minute)
)

// Crowd records transport evidence that several clients share id (distinct
// user agents within a short window, counted by the caller) at now. The
// shared label is set when the identity's timing is consistent with a crowd
// (see the crowd constants): it is not regular, it has been seen long
// enough, and its score is below the challenge band. A label so set masks
// what a crowd trips by nature (entropy, anti-burstiness, no pause,
// continuity) but, unlike one timing earned, does not keep a confirmed
// verdict from quarantining: a user agent costs a bot nothing, so the
// evidence may soften the score, never veto it. It reports whether the
// label holds after the call. An identity that is not tracked is ignored.
func (e *Engine) Crowd(id identity.ID, now time.Time) bool {
	t := unixNano(now)
	sh, i, ok := e.lockFind(id)
	defer sh.mu.Unlock()
	if !ok {
		return false
	}
	st := &sh.slot(i).st
	t = max(t, st.last)
	// A label timing earned stands as it is; crowd evidence only sets or
	// extends its own, which never keeps timing from confirming.
	if (!st.shared(t) || st.crowdOnly()) && st.crowdLabel(t, e.challenge) {
		till := (t-st.first+crowdFor)/int64(time.Second) + 1
		if st.shared(t) {
			till = max(till, int64(st.sharedTill&^crowdOnlyBit))
		}
		st.sharedTill = uint32(min(till, crowdOnlyBit-1)) | crowdOnlyBit
	}
	return st.shared(t)
}

// crowdLabel reports whether crowd evidence at now may set s's shared
// label: enough intervals, a Poisson-like or bursty mix, a sustained rate,
// and a latest score below challenge (a regular component, e.g. a bot
// among the crowd or a bot rotating its user agent, keeps timing on).
func (s *state) crowdLabel(now int64, challenge uint8) bool {
	return s.nInt >= crowdMinIntervals && s.score < challenge &&
		s.ewBurstiness() >= crowdMinAEW && s.rate(now) >= crowdMinRate
}
