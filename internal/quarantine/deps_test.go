package quarantine

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the package plain Go (DESIGN.md §2): the quarantine
// must not know about transports, metrics or the scorer.
func TestImports(t *testing.T) {
	banned := map[string]string{ // import path prefix => why
		"net/http":                                     "transport-free: the dashboard owns HTTP",
		"google.golang.org/grpc":                       "transport-free: authz owns gRPC",
		"github.com/envoyproxy/":                       "transport-free: authz owns the Envoy protos",
		"github.com/prometheus/":                       "main wires metrics from Stats and Sweep",
		"github.com/flowlock/flowlock/internal/risk":   "authz links scores to admission",
		"github.com/flowlock/flowlock/internal/config": "main translates Config into Options",
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for bad, why := range banned {
				if path == bad || strings.HasPrefix(path, strings.TrimSuffix(bad, "/")+"/") {
					t.Errorf("%s imports %s: not allowed (%s)", name, path, why)
				}
			}
		}
	}
}
