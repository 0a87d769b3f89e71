package dashboard

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var staticFS embed.FS

// page renders / and /status: the command center's shell. Everything live
// comes from /api/v1/stream and is inserted by the page's scripts as text;
// the template itself carries only the version, the mode and whether a
// decoy is configured (so the page never asks for a panel it cannot show).
var page = template.Must(template.ParseFS(staticFS, "static/index.html"))

// handlePage serves the command center.
func (s *server) handlePage(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	err := page.Execute(&buf, struct {
		Version, Mode string
		Honeypot      bool
	}{s.version, s.mode, s.honeypot != nil})
	if err != nil {
		s.log.ErrorContext(r.Context(), "render status page", "err", err)
		http.Error(w, "internal error; see the flowlock-authz log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

// assetHandler serves the page's scripts, styles and icon from the binary,
// under /assets/. Directories are not listed.
func assetHandler() http.Handler {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	files := http.StripPrefix("/assets/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/assets/")
		if name == "" || strings.HasSuffix(name, "/") || name == "index.html" {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
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
	if s.sharing != nil {
		// A replica on local state still serves (it is ready), but says so.
		w.Write([]byte(s.sharing().ReadyLine() + "\n"))
	}
}
