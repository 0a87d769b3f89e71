package decoy

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// maxLatest bounds GET /api/v1/records.
const maxLatest = 1000

// API returns the read-only records API, for Flow Lock's dashboard and
// operators. It must be served on its own listener, never the bait's:
// a bot routed to the decoy must not be able to read what was recorded.
//
//	GET /api/v1/summary                      top paths and per identity (Summary)
//	GET /api/v1/records?limit=N&identity=ID  the latest records, newest first (N ≤ 1000, default 100)
//	GET /healthz                             {"status":"ok"}
//
// Everything it serves is masked already (see Record), so, like Flow
// Lock's own reads, it asks for no token.
func API(ring *Ring) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/summary", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, ring.Summary())
	})
	mux.HandleFunc("GET /api/v1/records", func(w http.ResponseWriter, r *http.Request) {
		limit := 100
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > maxLatest {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be 1-" + strconv.Itoa(maxLatest)})
				return
			}
			limit = n
		}
		writeJSON(w, http.StatusOK, map[string]any{"records": ring.Latest(limit, r.URL.Query().Get("identity"))})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // our own values always encode; the client may have gone
}
