package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/untrusted"
)

const (
	defaultLimit           = 50       // identities listed when ?limit is absent
	maxLimit               = 1000     // most identities one request may list
	defaultQuarantineLimit = 1000     // quarantine entries listed when ?limit is absent
	maxQuarantineLimit     = 10_000   // most quarantine entries one request may list
	maxBodyBytes           = 64 << 10 // largest admin request body
	maxReasonBytes         = 200      // longest reason an admin may give a ban
	defaultBanReason       = "manual" // reason of a ban that gives none
)

// handleIdentities serves GET /api/v1/identities?limit=N as
// {"identities":[...]}, riskiest first.
func (s *server) handleIdentities(w http.ResponseWriter, r *http.Request) {
	limit, ok := queryLimit(w, r, defaultLimit, maxLimit)
	if !ok {
		return
	}
	ids := s.backend.Identities(limit, s.now())
	if len(ids) > limit {
		ids = ids[:limit]
	}
	if ids == nil {
		ids = []Identity{}
	}
	s.displayIdentities(ids)
	s.writeJSON(w, struct {
		Identities []Identity `json:"identities"`
	}{ids})
}

// handleQuarantine serves GET /api/v1/quarantine?limit=N as
// {"quarantine":[...],"total":N}: the N entries that end soonest (1000 by
// default, at most 10000), and how many there are in all. The quarantine
// may hold a million entries; nobody reads them all from one response.
func (s *server) handleQuarantine(w http.ResponseWriter, r *http.Request) {
	limit, ok := queryLimit(w, r, defaultQuarantineLimit, maxQuarantineLimit)
	if !ok {
		return
	}
	qs, total := s.backend.Quarantined(limit, s.now())
	if len(qs) > limit {
		qs = qs[:limit]
	}
	if qs == nil {
		qs = []Quarantine{}
	}
	s.displayQuarantine(qs)
	s.writeJSON(w, struct {
		Quarantine []Quarantine `json:"quarantine"`
		Total      int          `json:"total"`
	}{qs, max(total, len(qs))})
}

// queryLimit reads ?limit, an integer from 1 to most, or def when it is
// absent. On a bad value it has answered 400 and returns false.
func queryLimit(w http.ResponseWriter, r *http.Request, def, most int) (int, bool) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be an integer from 1 to %d", most))
		return 0, false
	}
	return n, true
}

// handleConfig serves GET /api/v1/config: the effective configuration,
// redacted by whoever supplied Options.Config.
func (s *server) handleConfig(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, s.config())
}

// banRequest is the body of POST /api/v1/quarantine.
type banRequest struct {
	Identity string `json:"identity"` // required; see identity.Parse
	TTL      string `json:"ttl"`      // Go duration such as "10m"; empty means the backend's default
	Reason   string `json:"reason"`   // empty means "manual"
}

// handleBan serves POST /api/v1/quarantine: it bans one identity and answers
// with the resulting quarantine entry, and "persisted": false with a
// "persist_error" when the ban is in force but was not saved
// (ErrNotPersisted). Release and extend answer the same way.
func (s *server) handleBan(w http.ResponseWriter, r *http.Request) {
	var req banRequest
	if !s.decodeBody(w, r, &req) {
		return
	}

	if req.Identity == "" {
		writeError(w, http.StatusBadRequest, "identity is required")
		return
	}
	id, msg := s.parseBanned(req.Identity)
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	var ttl time.Duration // 0: the backend's default
	if req.TTL != "" {
		var msg string
		if ttl, msg = s.adminDuration("ttl", req.TTL); msg != "" {
			writeError(w, http.StatusBadRequest, msg)
			return
		}
	}
	reason := req.Reason
	if reason == "" {
		reason = defaultBanReason
	}
	if len(reason) > maxReasonBytes || !untrusted.Plain(reason) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reason must be at most %d bytes of printable UTF-8 without invisible or bidirectional format characters", maxReasonBytes))
		return
	}

	now := s.now()
	q, err := s.backend.Ban(id, ttl, reason, now)
	if err != nil && !errors.Is(err, ErrNotPersisted) {
		s.backendError(w, r, "ban", id, err)
		return
	}
	// Not persisted: the ban is in force, so it is a success that says so
	// (the persister has logged why).
	s.log.InfoContext(r.Context(), "admin ban",
		"action", "ban", "identity", id.Masked(), "ttl", q.Until.Sub(q.Since), "reason", reason,
		"until", q.Until, "persisted", err == nil, "remote_addr", r.RemoteAddr)
	q.Identity = s.display(q.Identity)
	s.writeJSON(w, struct {
		Quarantine
		persistence
	}{q, notPersisted(err)})
}

// handleRelease serves DELETE /api/v1/quarantine/{identity}: 200 when the
// identity was released, 404 when it was not in quarantine.
func (s *server) handleRelease(w http.ResponseWriter, r *http.Request) {
	id, parseErr := s.parseListed(r.PathValue("identity")) // URL-decoded by the mux
	if id.IsZero() {
		writeError(w, http.StatusBadRequest, parseErr.Error())
		return
	}
	now := s.now()
	released, err := s.backend.Release(id, now)
	if err != nil && !errors.Is(err, ErrNotPersisted) {
		s.backendError(w, r, "release", id, err)
		return
	}
	s.log.InfoContext(r.Context(), "admin release",
		"action", "release", "identity", id.Masked(), "released", released,
		"persisted", err == nil, "remote_addr", r.RemoteAddr)
	if !released {
		notListed(w, parseErr)
		return
	}
	s.writeJSON(w, struct {
		Identity string `json:"identity"`
		Released bool   `json:"released"`
		persistence
	}{s.displayID(id), true, notPersisted(err)})
}

// backendError answers a failed Ban or Release: the caller's fault is a 400
// with the backend's words; anything else is logged and kept private.
func (s *server) backendError(w http.ResponseWriter, r *http.Request, action string, id identity.ID, err error) {
	if errors.Is(err, ErrInvalid) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.log.ErrorContext(r.Context(), "admin "+action+" failed",
		"action", action, "identity", id.Masked(), "remote_addr", r.RemoteAddr, "err", err)
	writeError(w, http.StatusInternalServerError, "internal error; see the flowlock-authz log")
}

// writeJSON answers 200 with v as JSON. encoding/json escapes <, > and &, so a
// hostile identity cannot become markup even if the response is misread as
// HTML (and nosniff forbids that anyway).
func (s *server) writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode JSON response", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error; see the flowlock-authz log")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}

// writeError answers with {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg}) // a struct of one string always encodes
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// decisionsPerIdentity is the most decisions the explain view lists.
const decisionsPerIdentity = 50

// explainResponse is the body of GET /api/v1/identities/{identity}.
type explainResponse struct {
	Identity    string       `json:"identity"`
	Tracked     bool         `json:"tracked"`     // the engine has timing state for it
	Explanation *Explanation `json:"explanation"` // null when not tracked
	Quarantine  *Quarantine  `json:"quarantine"`  // null when not in quarantine
	Decisions   []Decision   `json:"decisions"`   // newest first
	// Fingerprint is the TLS fingerprint the identity is keyed by (with
	// --identity fingerprint or address+fingerprint), as its hash; null
	// for identities keyed otherwise.
	Fingerprint *FingerprintView `json:"fingerprint"`
}

// handleExplain serves GET /api/v1/identities/{identity}: why the identity
// scores what it scores, its quarantine, and its recent decisions; 404 when
// Flow Lock knows nothing of it.
func (s *server) handleExplain(w http.ResponseWriter, r *http.Request) {
	text := r.PathValue("identity")
	id, known, ok := s.shown(text)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf(errUnknownMask, untrusted.Clip(text, 64)))
		return
	}
	if !known {
		var err error
		if id, err = identity.Parse(text, s.ipv6Prefix); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	now := s.now()
	name := IdentityText(id)
	resp := explainResponse{Identity: s.display(name)}
	if x, ok := s.backend.Explain(id, now); ok {
		x.Identity.Identity = s.display(x.Identity.Identity)
		resp.Tracked, resp.Explanation = true, &x
	}
	if q, ok := s.backend.QuarantineOf(id, now); ok {
		q.Identity = s.display(q.Identity)
		resp.Quarantine = &q
	}
	resp.Fingerprint = s.fingerprintOf(id, now)
	resp.Decisions = s.backend.Decisions(decisionsPerIdentity, id)
	if resp.Decisions == nil {
		resp.Decisions = []Decision{}
	}
	s.displayDecisions(resp.Decisions)
	if !resp.Tracked && resp.Quarantine == nil && len(resp.Decisions) == 0 {
		writeError(w, http.StatusNotFound, "identity is neither tracked nor in quarantine")
		return
	}
	s.writeJSON(w, resp)
}

// extendRequest is the body of POST /api/v1/quarantine/{identity}/extend.
type extendRequest struct {
	By string `json:"by"` // required Go duration such as "10m"
}

// handleExtend serves POST /api/v1/quarantine/{identity}/extend: it
// lengthens a quarantine and answers with the resulting entry; 404 when the
// identity is not in quarantine.
func (s *server) handleExtend(w http.ResponseWriter, r *http.Request) {
	id, parseErr := s.parseListed(r.PathValue("identity"))
	if id.IsZero() {
		writeError(w, http.StatusBadRequest, parseErr.Error())
		return
	}
	var req extendRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	if req.By == "" {
		writeError(w, http.StatusBadRequest, `by is required, a duration such as "10m"`)
		return
	}
	by, msg := s.adminDuration("by", req.By)
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	now := s.now()
	q, ok, err := s.backend.Extend(id, by, now)
	if err != nil && !errors.Is(err, ErrNotPersisted) {
		s.backendError(w, r, "extend", id, err)
		return
	}
	s.log.InfoContext(r.Context(), "admin extend",
		"action", "extend", "identity", id.Masked(), "by", by, "found", ok,
		"until", q.Until, "persisted", err == nil, "remote_addr", r.RemoteAddr)
	if !ok {
		notListed(w, parseErr)
		return
	}
	q.Identity = s.display(q.Identity)
	s.writeJSON(w, struct {
		Quarantine
		persistence
	}{q, notPersisted(err)})
}

// parseBanned reads the identity of a ban, or says in msg why it cannot be
// one. A ban that matches no client is worse than an error, since the
// operator believes the client is stopped, so beyond identity.Parse it
// refuses a value with surrounding spaces, a name when no identity header
// is configured, and a name that looks like a mistyped address (write
// "name:" before a header value that really looks like that).
func (s *server) parseBanned(text string) (id identity.ID, msg string) {
	if id, known, ok := s.shown(text); known {
		return id, ""
	} else if !ok {
		return identity.ID{}, fmt.Sprintf(errUnknownMask, untrusted.Clip(text, 64))
	}
	if strings.TrimSpace(text) != text {
		return identity.ID{}, fmt.Sprintf("identity %q has leading or trailing spaces", untrusted.Clip(text, 64))
	}
	id, err := identity.Parse(text, s.ipv6Prefix)
	if err != nil {
		return identity.ID{}, err.Error()
	}
	if _, isAddr := id.Addr(); isAddr {
		return id, ""
	}
	switch {
	case !s.names:
		return identity.ID{}, fmt.Sprintf("identity %q is not an IP address; clients are named by a header value only with --identity-header", untrusted.Clip(text, 64))
	case !strings.HasPrefix(text, "name:") && addressLike(text):
		return identity.ID{}, fmt.Sprintf(`identity %q looks like an IP address but is not one; to ban an identity-header value that looks like this, write "name:" before it`, untrusted.Clip(text, 64))
	}
	return id, ""
}

// addressLike reports whether s is made of what IP addresses and prefixes
// are made of (hex digits, '.', ':', '/', '%') and has a '.' or ':' and a
// digit: "203.0.113.999", "1.2.3", "2001:db8::g" is not, "deadbeef" is not.
func addressLike(s string) bool {
	var sep, digit bool
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digit = true
		case c == '.' || c == ':':
			sep = true
		case c == '/' || c == '%' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'):
		default:
			return false
		}
	}
	return sep && digit
}

// parseListed reads the identity of an existing quarantine entry for
// release and extend. It is identity.Parse, except that an IPv6 prefix of
// another length is taken as written when Parse refuses it: an entry kept
// as a range after --ipv6-prefix was made longer is listed under its old
// prefix (quarantine.List.Regroup), and its Release button must work.
// parseErr is Parse's error, for the answer when no such entry exists; id
// is zero when the text is no identity at all.
func (s *server) parseListed(text string) (id identity.ID, parseErr error) {
	if id, known, ok := s.shown(text); known {
		return id, nil
	} else if !ok {
		return identity.ID{}, fmt.Errorf(errUnknownMask, untrusted.Clip(text, 64))
	}
	id, parseErr = identity.Parse(text, s.ipv6Prefix)
	if parseErr == nil {
		return id, nil
	}
	var listed identity.ID
	if listed.UnmarshalText([]byte(text)) == nil {
		if _, v6 := listed.IPv6Bits(); v6 {
			return listed, parseErr
		}
	}
	return identity.ID{}, parseErr
}

// notListed answers a release or extend of an identity with no quarantine
// entry: 404, or 400 with Parse's words when the identity was an IPv6
// range that is not a listed entry either.
func notListed(w http.ResponseWriter, parseErr error) {
	if parseErr != nil {
		writeError(w, http.StatusBadRequest, parseErr.Error())
		return
	}
	writeError(w, http.StatusNotFound, "identity is not in quarantine")
}

// adminDuration reads the named duration field of an admin request: a Go
// duration, positive, at most the longest ban. msg is the 400 message, or "".
func (s *server) adminDuration(field, text string) (d time.Duration, msg string) {
	d, err := time.ParseDuration(text)
	switch {
	case err != nil:
		return 0, field + ` must be a duration such as "10m" or "2h"`
	case d <= 0:
		return 0, field + " must be positive"
	case d > s.maxBan:
		return 0, fmt.Sprintf("%s must be at most %v (%d days)", field, s.maxBan, s.maxBan/(24*time.Hour))
	}
	return d, ""
}

// handleAuth serves POST /api/v1/auth: 200 when the request carries the
// admin token (the admin wrapper answers otherwise), so that the page can
// tell an operator at once whether the token they typed is right.
func (s *server) handleAuth(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, struct {
		Admin bool `json:"admin"`
	}{true})
}

// decodeBody reads one JSON object of at most maxBodyBytes into v, with no
// unknown fields and nothing after it. On failure it has answered, and it
// returns false.
func (s *server) decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxBodyBytes))
			return false
		}
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "invalid JSON body: want a single object")
		return false
	}
	return true
}

// IdentityText writes id as the views carry it: as identity.ID.String does,
// except that a header value that would read back as an address gets the
// "name:" prefix (identity.ID.MarshalText), so that what the page shows,
// explains, releases and extends is always the same identity.
func IdentityText(id identity.ID) string {
	b, _ := id.MarshalText() // never fails
	return string(b)
}
