package decoy

import (
	"encoding/json"
	"hash/fnv"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/untrusted"
)

// The answer to a write (any method but GET, HEAD and OPTIONS): a
// temporary failure that claims nothing was done.
var writeRefused = []byte(`{"error":"service temporarily unavailable, please try again later"}` + "\n")

const writeRetryAfter = "60" // seconds

// Bounds of one record: what a hostile request can make the decoy keep.
const (
	maxHeaders     = 24
	maxHeaderName  = 64
	maxHeaderValue = 128
	maxPath        = 256
	maxQuery       = 256
	// MaxBody caps the body size a record keeps (BodyBytes): a request
	// may declare any Content-Length, up to 2^63-1, and the summary adds
	// them up.
	MaxBody = 1 << 20
)

// BaitOptions configure the bait.
type BaitOptions struct {
	Ring *Ring
	// IdentityHeader is the request header the proxy sets to the client
	// it routed here: "x-forwarded-for" (the default when ""), whose
	// rightmost entry is then the client's address as Envoy or nginx
	// appended it, or the header Flow Lock identifies clients by
	// (--identity-header). Name identities are recorded masked.
	IdentityHeader string
	// IPv6Prefix groups IPv6 clients as Flow Lock's --ipv6-prefix does; 0
	// means 64.
	IPv6Prefix int
	// Routes are the real API's paths, where reads get made-up documents;
	// every other path gets NotFound, for any method, as the real API
	// answers it. nil means every path is a route: then a probe of a path
	// no API has gets a document, and can tell the decoy from the API.
	Routes *Routes
	// NotFound is the answer outside Routes; nil means DefaultNotFound.
	NotFound *NotFound
	Now      func() time.Time // nil means time.Now
}

// Bait answers a read (GET, HEAD) of one of the API's routes with
// plausible JSON made up from its path, a write with a temporary failure
// (503, Retry-After), and any request outside the routes as the real API
// does (NotFound); it records every request in the ring. Nothing in an
// answer is real, and no answer claims that a write was done.
type Bait struct {
	ring     *Ring
	idKey    string // canonical header name
	forXFF   bool   // idKey is X-Forwarded-For: take its rightmost entry
	prefix   int
	routes   *Routes // nil: every path
	notFound *NotFound
	now      func() time.Time
	// answer is an http.ServeMux in front of answer, so that a path that
	// is not clean (//data, /a/../data) is redirected as the API's Go
	// router redirects it, before any route is matched.
	answer http.Handler
}

// NewBait returns the bait handler.
func NewBait(o BaitOptions) *Bait {
	b := &Bait{ring: o.Ring, idKey: http.CanonicalHeaderKey(o.IdentityHeader), prefix: o.IPv6Prefix,
		routes: o.Routes, notFound: o.NotFound, now: o.Now}
	if b.notFound == nil {
		b.notFound = DefaultNotFound()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", b.respond)
	b.answer = mux
	if b.idKey == "" {
		b.idKey = "X-Forwarded-For"
	}
	b.forXFF = b.idKey == "X-Forwarded-For"
	if b.prefix <= 0 {
		b.prefix = 64
	}
	if b.now == nil {
		b.now = time.Now
	}
	return b
}

// ServeHTTP answers and records one request.
func (b *Bait) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := b.now()
	// The body is not read, before the answer or after it: an API's
	// handler for a path it does not have, or for a read, does not read
	// it either, and net/http then answers at once and discards the body
	// itself (or closes the connection when much of it is left). Reading
	// it first would tell the decoy by one request: "100 Continue" sent
	// to Expect: 100-continue, or no answer to a body declared and not
	// sent. Reading it after the answer would hold the answer back until
	// the handler returns. What the record keeps is the size the request
	// declares, which net/http holds it to; a chunked body's is unknown.
	n, cut := r.ContentLength, false
	if n > MaxBody {
		n, cut = MaxBody, true
	}
	unsized := n < 0
	if unsized {
		n = 0
	}
	b.answer.ServeHTTP(w, r)
	// Every string is the record's own (strings.Clone): a clipped or
	// unchanged string may share the memory of the whole request line or
	// header it came from, which the ring would then keep alive unseen.
	b.ring.Add(Record{
		Time:        start,
		Identity:    strings.Clone(b.identity(r)),
		Method:      strings.Clone(untrusted.Clip(untrusted.Visible(r.Method), 16)),
		Path:        strings.Clone(untrusted.Clip(untrusted.Visible(r.URL.Path), maxPath)),
		Query:       strings.Clone(queryNames(r.URL.RawQuery)),
		Headers:     headers(r, b.idKey),
		BodyBytes:   n,
		BodyCut:     cut,
		BodyUnsized: unsized,
		Micros:      b.now().Sub(start).Microseconds(),
	})
}

// respond answers one request whose path is clean.
func (b *Bait) respond(w http.ResponseWriter, r *http.Request) {
	route := b.routes.Match(r.URL.Path)
	if !route && b.routes.Redirect(r.URL.Path) {
		// As the API's Go router answers /tree when it serves /tree/.
		to := url.URL{Path: r.URL.Path + "/", RawQuery: r.URL.RawQuery}
		http.Redirect(w, r, to.String(), http.StatusTemporaryRedirect)
		return
	}
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	write := !read && r.Method != http.MethodOptions
	switch {
	case route && read:
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		_, _ = w.Write(fakeJSON(r.URL.Path, b.now())) // the client may have gone; nothing to do about it
	case route && write:
		// A write is refused, never acknowledged: a person quarantined by
		// mistake must not believe an order or a payment went through. A
		// generic, passing outage is what a real API could answer too.
		// Outside the routes the API's own answer for a path it does not
		// have is as true: the API does nothing there either.
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		h.Set("Retry-After", writeRetryAfter)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write(writeRefused)
	case b.routes == nil: // OPTIONS, without the API's routes
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	default:
		// Outside the routes, and OPTIONS anywhere once the routes are
		// known (they name the API's reads): as the API answers a path or
		// method it does not serve.
		b.notFound.write(w, r)
	}
}

// identity is the client the proxy says it routed here, as the dashboard
// shows it: an address as it is (IPv6 grouped), a name masked.
func (b *Bait) identity(r *http.Request) string {
	v := r.Header.Values(b.idKey)
	if len(v) == 0 {
		return "(none)"
	}
	s := strings.TrimSpace(v[len(v)-1])
	if b.forXFF {
		if i := strings.LastIndexByte(s, ','); i >= 0 {
			s = strings.TrimSpace(s[i+1:])
		}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return identity.FromAddr(a.Unmap().WithZone(""), b.prefix).String()
	}
	if b.forXFF {
		return "(invalid)"
	}
	id, err := identity.FromName(s)
	if err != nil {
		return "(invalid)"
	}
	return id.Masked()
}

// headers records r's headers, bounded and masked. The identity header is
// left out: the record's Identity says it, masked.
func headers(r *http.Request, idKey string) []Header {
	out := make([]Header, 0, min(len(r.Header)+1, maxHeaders))
	if r.Host != "" {
		out = append(out, Header{Name: "host", Value: strings.Clone(untrusted.Clip(untrusted.Visible(r.Host), maxHeaderValue))})
	}
	for name, values := range r.Header {
		if name == idKey {
			continue
		}
		for _, v := range values {
			if len(out) >= maxHeaders {
				return out
			}
			out = append(out, Header{
				Name:  strings.Clone(strings.ToLower(untrusted.Clip(untrusted.Visible(name), maxHeaderName))),
				Value: strings.Clone(maskHeader(name, v)),
			})
		}
	}
	return out
}

// secretWords mark a header whose value must not be kept: credentials,
// sessions, signatures. Matched in the lowercase name.
var secretWords = []string{"auth", "cookie", "token", "secret", "key", "session", "password", "passwd", "signature", "credential", "csrf", "xsrf"}

// maskHeader returns the value of a header to record: its length only
// for secret-looking names, else the value clipped and made visible.
func maskHeader(name, v string) string {
	lower := strings.ToLower(name)
	for _, w := range secretWords {
		if strings.Contains(lower, w) {
			return "(masked, " + strconv.Itoa(len(v)) + " bytes)"
		}
	}
	return untrusted.Clip(untrusted.Visible(v), maxHeaderValue)
}

// queryNames returns the parameter names of a raw query, without values
// (they may carry tokens): "id=…&page=…".
func queryNames(raw string) string {
	if raw == "" {
		return ""
	}
	var b strings.Builder
	for part := range strings.SplitSeq(raw, "&") {
		name, _, _ := strings.Cut(part, "=")
		// Measured after Visible, which writes an unseen byte as up to
		// eight characters: a clipped name can still be long.
		shown := untrusted.Visible(untrusted.Clip(name, 64))
		if b.Len()+len(shown) > maxQuery {
			b.WriteString("…")
			break
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(shown)
		b.WriteString("=…")
	}
	return b.String()
}

// Words the made-up documents are built from.
var (
	nouns    = []string{"anchor", "beacon", "compass", "delta", "ember", "falcon", "garnet", "harbor", "indigo", "juniper", "kestrel", "lumen", "meridian", "nimbus", "onyx", "pylon"}
	statuses = []string{"active", "pending", "archived", "active", "active"}
)

// fakeJSON makes up a plausible document for a read: one object for a
// path that ends in a number (/users/42), a page of items otherwise. The
// same path always gives the same content, as a real API would, and
// nothing in it is real. Writes get no document (see writeRefused).
func fakeJSON(path string, now time.Time) []byte {
	h := fnv.New64a()
	h.Write([]byte(path))
	seed := h.Sum64()
	pick := func(list []string, i uint64) string { return list[(seed>>(i%48)+i)%uint64(len(list))] }
	at := now.UTC().Format(time.RFC3339Nano)

	var doc any
	last := path[strings.LastIndexByte(path, '/')+1:]
	id, numeric := strconv.ParseUint(last, 10, 32)
	switch {
	case numeric == nil:
		doc = map[string]any{
			"id": id, "name": pick(nouns, 1) + "-" + strconv.FormatUint(seed%1000, 10),
			"status": pick(statuses, 2), "created_at": now.UTC().Add(-time.Duration(seed%(90*24)) * time.Hour).Format(time.RFC3339),
		}
	default:
		n := 3 + seed%5
		items := make([]map[string]any, 0, n)
		for i := range n {
			items = append(items, map[string]any{"id": (seed+i)%9000 + 1, "name": pick(nouns, i+3)})
		}
		doc = map[string]any{"items": items, "served_at": at}
	}
	out, err := json.Marshal(doc)
	if err != nil { // maps of strings and numbers always encode
		return []byte("{}")
	}
	return append(out, '\n')
}
