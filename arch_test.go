package flowlock_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

const module = "github.com/flowlock/flowlock"

// forbidden lists, per package, import path prefixes it must not depend on
// (directly or through others), with the reason: DESIGN.md §2. The domain
// packages stay plain Go with the clock passed in, so they can be replayed
// in virtual time and tested without a network.
var forbidden = map[string]map[string]string{
	"internal/risk": {
		"google.golang.org/grpc":        "risk knows nothing of transports",
		"github.com/envoyproxy":         "risk knows nothing of Envoy",
		"github.com/prometheus":         "metrics are recorded by callers",
		"net/http":                      "risk knows nothing of transports",
		module + "/internal/quarantine": "the policy that links score to quarantine lives in authz",
		module + "/internal/config":     "domain packages are configured through Go APIs",
	},
	"internal/quarantine": {
		"google.golang.org/grpc":    "quarantine knows nothing of transports",
		"github.com/envoyproxy":     "quarantine knows nothing of Envoy",
		"github.com/prometheus":     "metrics are recorded by callers",
		"net/http":                  "quarantine knows nothing of transports",
		module + "/internal/risk":   "the policy that links score to quarantine lives in authz",
		module + "/internal/config": "domain packages are configured through Go APIs",
	},
	"internal/traffic": {
		"google.golang.org/grpc":    "scenarios are pure streams of timestamps",
		"net/http":                  "scenarios are pure streams of timestamps",
		module + "/internal/config": "domain packages are configured through Go APIs",
	},
	"internal/authz": {
		module + "/internal/config": "authz is configured through Go APIs by main",
		module + "/dashboard":       "the dashboard depends on views, not the reverse",
	},
	"internal/decoy": {
		module + "/internal/authz":      "the decoy knows nothing of decisions: it must not be able to serve anything real",
		module + "/internal/quarantine": "the decoy knows nothing of decisions",
		module + "/internal/config":     "domain packages are configured through Go APIs",
		module + "/dashboard":           "the dashboard reads the decoy, not the reverse",
	},
	"internal/metrics": {
		module + "/internal/": "metrics imports no Flow Lock package: main passes label values (metrics.Vocabulary) and sources",
		module + "/dashboard": "metrics imports no Flow Lock package",
	},
	"internal/config": {
		// config takes the domain's defaults from risk and quarantine (one
		// source for each), and nothing else of Flow Lock.
		module + "/internal/authz":   "config describes settings; wire builds components",
		module + "/internal/metrics": "config describes settings; wire builds components",
		module + "/internal/wire":    "config describes settings; wire builds components",
		module + "/internal/replay":  "config describes settings; wire builds components",
		module + "/internal/traffic": "config describes settings; wire builds components",
		module + "/internal/volume":  "config describes settings; wire builds components",
		module + "/dashboard":        "config imports no transport or view",
	},
	"internal/redisstore": {
		module + "/internal/risk":       "the store moves plain values; the decision stack maps them",
		module + "/internal/quarantine": "the store moves plain values; the decision stack maps them",
		module + "/internal/config":     "domain packages are configured through Go APIs",
		"google.golang.org/grpc":        "the store knows nothing of the Check transport",
		"github.com/prometheus":         "metrics are recorded by callers",
	},
	"dashboard": {
		module + "/internal/authz":      "the dashboard defines the views it needs",
		module + "/internal/risk":       "the dashboard defines the views it needs",
		module + "/internal/quarantine": "the dashboard defines the views it needs",
	},
	"middleware": {
		module + "/internal/":   "middleware is the package other modules import; it speaks the public ext_authz API only",
		module + "/dashboard":   "middleware is the package other modules import; it speaks the public ext_authz API only",
		module + "/test/":       "test helpers are for tests",
		"github.com/prometheus": "a library leaves metrics to its caller",
	},
}

// TestDependencies fails when a package depends on what DESIGN.md §2 says it
// must not.
func TestDependencies(t *testing.T) {
	for pkg, bad := range forbidden {
		out, err := flowlocktest.Run(2*time.Minute, "", "go", "list", "-deps", "-json=ImportPath", "./"+pkg)
		if err != nil {
			t.Errorf("go list %s: %v\n%s", pkg, err, out)
			continue
		}
		dec := json.NewDecoder(strings.NewReader(out))
		for dec.More() {
			var p struct{ ImportPath string }
			if err := dec.Decode(&p); err != nil {
				t.Fatal(err)
			}
			if p.ImportPath == module+"/"+pkg {
				continue
			}
			for prefix, why := range bad {
				if p.ImportPath == prefix || strings.HasPrefix(p.ImportPath, prefix+"/") ||
					(strings.HasSuffix(prefix, "/") && strings.HasPrefix(p.ImportPath, prefix)) {
					t.Errorf("%s depends on %s: %s", pkg, p.ImportPath, why)
				}
			}
		}
	}
}

// TestPackageDocs fails when a package has no package doc comment.
func TestPackageDocs(t *testing.T) {
	documented := map[string]bool{} // directory -> some file has a package doc
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		documented[dir] = documented[dir] || (f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, ok := range documented {
		if !ok {
			t.Errorf("package in %s has no package doc comment", dir)
		}
	}
}
