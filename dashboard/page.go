package dashboard

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
)

//go:embed templates/status.html
var templateFS embed.FS

// statusPage renders / and /status. html/template escapes every value by
// context, so identities and reasons from clients stay text.
var statusPage = template.Must(template.ParseFS(templateFS, "templates/status.html"))

// pageRows is the most quarantine entries the status page lists.
const pageRows = 20

// handlePage serves the placeholder status page: version, the current
// quarantine (first pageRows entries) and links to the API.
func (s *server) handlePage(w http.ResponseWriter, r *http.Request) {
	qs := s.backend.Quarantined(s.now())
	more := 0
	if len(qs) > pageRows {
		more = len(qs) - pageRows
		qs = qs[:pageRows]
	}
	var buf bytes.Buffer
	err := statusPage.Execute(&buf, struct {
		Version    string
		Quarantine []Quarantine
		More       int
	}{s.version, qs, more})
	if err != nil {
		s.log.ErrorContext(r.Context(), "render status page", "err", err)
		http.Error(w, "internal error; see the flowlock-authz log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

// handleHealthz serves GET /healthz: 200 while the process can answer.
func (s *server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// handleReadyz serves GET /readyz: 200 when Options.Ready reports nothing
// wrong, else 503 with its reason.
func (s *server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.ready(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("not ready: " + err.Error() + "\n"))
		return
	}
	w.Write([]byte("ok\n"))
}
