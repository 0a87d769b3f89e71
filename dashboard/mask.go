package dashboard

import (
	"sync"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/untrusted"
)

// A name identity (an identity-header value) is usually a credential, and
// the reads of this API need no token. So every view shows it as
// identity.ID.Masked gives it, unless the operator started the service with
// --show-identities; then it is shown as it is, with any character that
// does not print written as \u{XXXX} (untrusted.Visible). Addresses are
// shown as they are: they are what operators act on, and a client's
// address is no secret from the networks it crosses.
//
// The page's buttons send back what they show. So the dashboard remembers
// which identity each shown text stands for, and the admin API and the
// explain view accept the shown text as well as the value itself.

// aliasesPerGeneration bounds the remembered texts: two generations of at
// most this many, so at most 2 × 65536 entries (a few MB with 128-byte
// names). A text unused for two generations is forgotten; the next listing
// that shows it remembers it again.
const aliasesPerGeneration = 1 << 16

// aliases maps shown texts back to identities. It is safe for concurrent
// use.
type aliases struct {
	mu       sync.Mutex // guards the following fields
	cur, old map[string]identity.ID
}

// remember records that text shows id.
func (a *aliases) remember(text string, id identity.ID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.cur[text]; ok {
		return
	}
	if a.cur == nil || len(a.cur) >= aliasesPerGeneration {
		a.old, a.cur = a.cur, make(map[string]identity.ID)
	}
	a.cur[text] = id.Clone()
}

// lookup returns the identity shown as text.
func (a *aliases) lookup(text string) (identity.ID, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if id, ok := a.cur[text]; ok {
		return id, true
	}
	id, ok := a.old[text]
	return id, ok
}

// display returns how the views show an identity the backend wrote with
// IdentityText, and remembers it when that differs.
func (s *server) display(text string) string {
	var id identity.ID
	if id.UnmarshalText([]byte(text)) != nil || id.Name() == "" {
		return text // an address, or nothing this package wrote
	}
	shown := id.Masked()
	if s.showNames {
		shown = untrusted.Visible(text)
	}
	if shown != text {
		s.aliases.remember(shown, id)
	}
	return shown
}

// displayID is display for an identity.ID.
func (s *server) displayID(id identity.ID) string { return s.display(IdentityText(id)) }

// shown resolves the text of an admin request or explain path: a text
// the views showed, or a mask nobody showed (ok false: refuse it, since
// taking it as a header value would act on nobody), or any other text for
// identity.Parse (known false).
func (s *server) shown(text string) (id identity.ID, known, ok bool) {
	if id, found := s.aliases.lookup(text); found {
		return id, true, true
	}
	if identity.IsMask(text) {
		return identity.ID{}, false, false
	}
	return identity.ID{}, false, true
}

// errUnknownMask answers a masked identity that is not remembered.
const errUnknownMask = `masked identity %q is not one this dashboard listed recently; list it again, or give the value itself (write "name:" before a value that looks like a mask)`

// displayIdentities masks a list in place.
func (s *server) displayIdentities(ids []Identity) {
	for i := range ids {
		ids[i].Identity = s.display(ids[i].Identity)
	}
}

// displayQuarantine masks a list in place.
func (s *server) displayQuarantine(qs []Quarantine) {
	for i := range qs {
		qs[i].Identity = s.display(qs[i].Identity)
	}
}

// displayDecisions masks a list in place; it must be a copy of the
// journal's.
func (s *server) displayDecisions(ds []Decision) {
	for i := range ds {
		ds[i].Identity = s.display(ds[i].Identity)
	}
}
