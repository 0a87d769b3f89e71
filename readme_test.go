package flowlock_test

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/flowlock/flowlock/internal/config"
)

var update = flag.Bool("update", false, "rewrite generated sections of README.md")

const (
	tableStart = "<!-- config-table:start (generated from internal/config; a test keeps it in sync) -->\n"
	tableEnd   = "<!-- config-table:end -->"
)

// configTable renders config.Reference() as the README's markdown table.
func configTable() string {
	var b strings.Builder
	b.WriteString("| flag | environment | default | meaning |\n|---|---|---|---|\n")
	for _, s := range config.Reference() {
		def := "—"
		if s.Default != "" {
			def = "`" + s.Default + "`"
		}
		fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s |\n", s.Flag, s.Env, def, strings.ReplaceAll(s.Help, "|", `\|`))
	}
	return b.String()
}

const (
	detectionStart = "<!-- detection-summary:start -->\n"
	detectionEnd   = "<!-- detection-summary:end -->"
)

// detectionTable returns the Results table of docs/detection.md, the
// committed output of the held-out evaluation, for the README.
func detectionTable(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("docs/detection.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "\n## Results\n")
	if i < 0 {
		t.Fatal("docs/detection.md has no Results section")
	}
	var rows []string
	for _, line := range strings.Split(doc[i+len("\n## Results\n"):], "\n") {
		if strings.HasPrefix(line, "|") {
			rows = append(rows, line)
		} else if len(rows) > 0 {
			break
		}
	}
	if len(rows) < 3 {
		t.Fatal("docs/detection.md's Results section has no table")
	}
	return "Held-out results, copied from [docs/detection.md](docs/detection.md) by a test " +
		"(RTD/STD: requests and time to detection, median/p90; SHARED: streams labelled as many " +
		"people behind one address; NAIVE: the brief's formula on the same streams):\n\n" +
		strings.Join(rows, "\n") + "\n"
}

// replaceBlock swaps what stands between start and end in doc.
func replaceBlock(t *testing.T, doc, start, end, body string) string {
	t.Helper()
	i, j := strings.Index(doc, start), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the markers %q … %q", start, end)
	}
	return doc[:i+len(start)] + body + doc[j:]
}

// TestReadmeConfigTable fails when README.md's configuration table differs
// from the settings the binary really has, or its detection table from the
// committed evaluation. Run with -update to fix.
func TestReadmeConfigTable(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	want := replaceBlock(t, readme, tableStart, tableEnd, configTable())
	want = replaceBlock(t, want, detectionStart, detectionEnd, detectionTable(t))
	if readme == want {
		return
	}
	if *update {
		if err := os.WriteFile("README.md", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's generated tables are out of date: run go test -run TestReadmeConfigTable -update .")
}
