package quarantine

import (
	"testing"
	"time"
)

// TestApplyMergesInAnyOrder: replicas that receive the same changes in
// different orders end with the same entry: the later end, the larger
// strike count, the larger hit count.
func TestApplyMergesInAnyOrder(t *testing.T) {
	id := ipID("192.0.2.7")
	a := Entry{ID: id, Since: t0, Until: t0.Add(5 * time.Minute), Strikes: 1, Reason: "periodic", Score: 90}
	b := Entry{ID: id, Since: t0.Add(time.Minute), Until: t0.Add(20 * time.Minute), Strikes: 3, Reason: "manual", Manual: true, Hits: 7}
	now := t0.Add(2 * time.Minute)

	l1, l2 := New(Options{}), New(Options{})
	if !l1.Apply(a, now) || !l1.Apply(b, now) {
		t.Fatal("Apply reported no change")
	}
	l2.Apply(b, now)
	if l2.Apply(a, now) {
		t.Error("an earlier, weaker entry changed the list")
	}
	e1, ok1 := l1.Check(id, now)
	e2, ok2 := l2.Check(id, now)
	if !ok1 || !ok2 || e1 != e2 {
		t.Fatalf("orders disagree: %+v %v / %+v %v", e1, ok1, e2, ok2)
	}
	if !e1.Until.Equal(b.Until) || e1.Strikes != 3 || !e1.Manual || e1.Hits != 7 {
		t.Errorf("merged entry = %+v", e1)
	}
	// The replica escalates from the shared strikes: its next admission
	// after this one ends is the fourth strike.
	next := l1.Admit(id, b.Until.Add(time.Second), "periodic", 95)
	if next.Strikes != 4 {
		t.Errorf("admission after shared strikes: %d strikes, want 4", next.Strikes)
	}
	evs, _ := l2.Events(0)
	if len(evs) != 1 || !evs[0].Remote || evs[0].Kind != EventBanned {
		t.Errorf("events = %+v, want one remote ban", evs)
	}
}

// TestApplyOverAndWithdraw: an entry already over adds nothing; Withdraw
// ends a quarantine as a remote release.
func TestApplyOverAndWithdraw(t *testing.T) {
	l := New(Options{})
	id := ipID("192.0.2.8")
	if l.Apply(Entry{ID: id, Since: t0, Until: t0.Add(time.Minute)}, t0.Add(time.Hour)) {
		t.Error("an entry over at now changed the list")
	}
	now := t0.Add(time.Second)
	l.Apply(Entry{ID: id, Since: t0, Until: t0.Add(time.Hour), Strikes: 1, Reason: "periodic"}, now)
	if !l.Withdraw(id, now) {
		t.Fatal("Withdraw found nothing")
	}
	if _, ok := l.Check(id, now); ok {
		t.Error("still quarantined after Withdraw")
	}
	if l.Withdraw(id, now) {
		t.Error("Withdraw twice reported true")
	}
	evs, _ := l.Events(0)
	if last := evs[len(evs)-1]; last.Kind != EventReleased || !last.Remote {
		t.Errorf("last event = %+v, want a remote release", last)
	}
}

// TestApplyManualBanOverLongerQuarantine: a ban shorter than the
// quarantine it lands on keeps the end but makes it manual, with the
// operator's reason, on every replica.
func TestApplyManualBanOverLongerQuarantine(t *testing.T) {
	l := New(Options{})
	id := ipID("192.0.2.10")
	now := t0.Add(time.Second)
	l.Apply(Entry{ID: id, Since: t0, Until: t0.Add(time.Hour), Strikes: 1, Reason: "periodic", Score: 90}, now)
	if !l.Apply(Entry{ID: id, Since: t0, Until: t0.Add(time.Hour), Strikes: 1, Reason: "operator: confirmed scraper", Manual: true}, now) {
		t.Fatal("a manual ban over the same end changed nothing")
	}
	e, _ := l.Check(id, now)
	if !e.Manual || e.Reason != "operator: confirmed scraper" || !e.Until.Equal(t0.Add(time.Hour)) {
		t.Errorf("entry = %+v", e)
	}
}
