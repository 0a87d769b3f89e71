package wire

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/traffic"
)

// TestReplicaAdmissionsFeedFingerprintEvidence: with --redis the replica
// admits from the merged stream through Policy.Admit, off the Check; the
// first requests refused after such an admission must record the
// fingerprint, or --fingerprint-flag-after gathers nothing on a shared
// deployment. Redis
// is unreachable here: the replica feeds and admits locally, as it does
// with Redis up.
func TestReplicaAdmissionsFeedFingerprintEvidence(t *testing.T) {
	c := evidenceConfig()
	c.RedisAddr = "127.0.0.1:1"
	s := Build(c, Extra{})
	if s.Replica == nil {
		t.Fatal("no replica")
	}
	sc, _ := traffic.Lookup("uniform-20pct-2s")
	admitted := 0
	for i := range 6 {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)})
		st := sc.Stream(7, evidenceStart.Add(time.Duration(i)*10*time.Minute))
		var last time.Time
		for n := 0; n < 400; n++ {
			req, ok := st.Next()
			if !ok {
				break
			}
			cl := s.Rules.ResolveWith(a, "", "", "", botJA4)
			s.Policy.Decide(authz.Request{Client: cl, Path: req.Path, Now: req.TS})
			if req.TS.Sub(last) >= time.Second {
				s.Replica.Tick(context.Background(), req.TS.Add(time.Second))
				last = req.TS
			}
		}
		if _, ok := s.Quarantine.Check(cl0(s, a), evidenceStart.Add(time.Duration(i)*10*time.Minute+5*time.Minute)); ok {
			admitted++
		}
	}
	t.Logf("%d of 6 addresses quarantined; fingerprints tracked %d, flagged %d", admitted, s.Evidence.Len(), s.Evidence.Count(evidenceStart.Add(time.Hour)))
	if admitted >= 3 && s.Evidence.Count(evidenceStart.Add(55*time.Minute)) == 0 {
		t.Errorf("%d addresses with one fingerprint quarantined through the shared replica, fingerprint not flagged (evidence tracks %d)", admitted, s.Evidence.Len())
	}
}

func cl0(s *Stack, a netip.Addr) identity.ID { return s.Rules.ResolveWith(a, "", "", "", botJA4).ID }
