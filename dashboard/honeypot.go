package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/flowlock/flowlock/internal/decoy"
)

// The decoy's summary is read on demand, at most once per honeypotFresh
// whatever the number of viewers, within honeypotTimeout, and at most
// honeypotMaxBody bytes of it: a slow or hostile decoy cannot hold the
// dashboard or grow its memory.
const (
	honeypotFresh   = 2 * time.Second
	honeypotTimeout = 2 * time.Second
	honeypotMaxBody = 1 << 20
)

// honeypotView is the body of GET /api/v1/honeypot: the decoy's summary
// (decoy.Summary: top paths and per identity) and when it was read.
type honeypotView struct {
	FetchedAt time.Time `json:"fetched_at"`
	decoy.Summary
}

// honeypotReader reads the decoy's summary for the page, caching it for
// honeypotFresh. It is safe for concurrent use.
type honeypotReader struct {
	url    string // the decoy API's summary URL
	client *http.Client

	mu   sync.Mutex // guards the following fields; held while reading, so one read at a time
	last honeypotView
	err  error
	at   time.Time // when last or err was read; zero: never
}

// newHoneypotReader reads from the records API at base
// (flowlock-honeypot --api-addr); nil when base is "".
func newHoneypotReader(base string) *honeypotReader {
	if base == "" {
		return nil
	}
	return &honeypotReader{
		url: strings.TrimSuffix(base, "/") + "/api/v1/summary",
		client: &http.Client{
			Timeout: honeypotTimeout,
			// The summary is the only thing asked for: a redirect is a
			// misconfiguration, not a place to follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// read returns the summary, read again when older than honeypotFresh.
func (h *honeypotReader) read(ctx context.Context, now time.Time) (honeypotView, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.at.IsZero() && now.Sub(h.at) < honeypotFresh && now.Sub(h.at) >= 0 {
		return h.last, h.err
	}
	s, err := h.fetch(context.WithoutCancel(ctx)) // one viewer leaving must not fail the read for the rest
	h.at, h.err = now, err
	if err == nil {
		h.last = honeypotView{FetchedAt: now, Summary: s}
	}
	return h.last, h.err
}

func (h *honeypotReader) fetch(ctx context.Context) (decoy.Summary, error) {
	var s decoy.Summary
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return s, err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return s, errors.New("the decoy did not answer")
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("the decoy answered %d", resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, honeypotMaxBody)).Decode(&s); err != nil {
		return s, errors.New("the decoy's answer is not a summary")
	}
	if s.TopPaths == nil {
		s.TopPaths = []decoy.PathCount{}
	}
	if s.Identities == nil {
		s.Identities = []decoy.IdentitySummary{}
	}
	return s, nil
}

// handleHoneypot serves GET /api/v1/honeypot: what the quarantined clients
// went for, as the decoy recorded it (flowlock-authz --honeypot-url). The
// decoy masks name identities and secret header values itself; like the
// other reads, this one needs no token. 404 without --honeypot-url, 502
// when the decoy cannot be read.
func (s *server) handleHoneypot(w http.ResponseWriter, r *http.Request) {
	if s.honeypot == nil {
		writeError(w, http.StatusNotFound, "no honeypot configured (--honeypot-url)")
		return
	}
	v, err := s.honeypot.read(r.Context(), s.now())
	if err != nil {
		writeError(w, http.StatusBadGateway, "honeypot: "+err.Error())
		return
	}
	s.writeJSON(w, v)
}
