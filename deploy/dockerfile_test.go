package deploy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"go/build"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// repoRoot is the module root, relative to this package's directory (where
// go test runs).
const repoRoot = ".."

// distroless is the runtime base image of every image Flow Lock ships.
const distroless = "gcr.io/distroless/static-debian12:nonroot"

// instruction is one Dockerfile instruction with its line continuations
// joined and comments dropped.
type instruction struct {
	line int    // line of the keyword
	cmd  string // upper-case keyword: FROM, RUN, COPY, ...
	args string
}

// stage is one FROM section of a Dockerfile.
type stage struct {
	name  string // "AS" name; "" when unnamed
	from  string // base image with ARG defaults substituted
	instr []instruction
}

// dockerfile is a parsed Dockerfile: its global ARG defaults and stages.
type dockerfile struct {
	args   map[string]string
	stages []stage
}

// parseDockerfile reads the instructions of a Dockerfile. It handles what
// Flow Lock's Dockerfile uses (comments, parser directives, backslash
// continuations, global ARGs in FROM) and fails on anything else it does
// not understand, such as heredocs, so that checks never run on a
// misreading.
func parseDockerfile(name string) (*dockerfile, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	df := &dockerfile{args: make(map[string]string)}
	var (
		cur   strings.Builder
		start int
	)
	flush := func() error {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if strings.Contains(in.args, "<<") {
			return fmt.Errorf("%s:%d: heredocs are not supported by this parser", name, in.line)
		}
		switch {
		case in.cmd == "FROM":
			from, as, _ := strings.Cut(in.args, " AS ")
			fields := strings.Fields(from)
			img := fields[len(fields)-1] // after any --platform=
			for k, v := range df.args {
				img = strings.ReplaceAll(img, "${"+k+"}", v)
				img = strings.ReplaceAll(img, "$"+k, v)
			}
			df.stages = append(df.stages, stage{name: strings.TrimSpace(as), from: img})
		case len(df.stages) == 0 && in.cmd == "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			df.args[k] = strings.Trim(v, `"`)
		case len(df.stages) == 0:
			return fmt.Errorf("%s:%d: %s before the first FROM", name, in.line, in.cmd)
		default:
			st := &df.stages[len(df.stages)-1]
			st.instr = append(st.instr, in)
		}
		return nil
	}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (cur.Len() == 0 && trimmed == "") {
			continue // comments and parser directives; blank lines between instructions
		}
		if cur.Len() == 0 {
			start = n
		}
		if body, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("%s: ends inside a continued line", name)
	}
	return df, flush()
}

// stage returns the stage called name, or nil.
func (df *dockerfile) stage(name string) *stage {
	for i := range df.stages {
		if df.stages[i].name == name {
			return &df.stages[i]
		}
	}
	return nil
}

// all returns the arguments of every instruction cmd of the stage.
func (s *stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.instr {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// last returns the last instruction cmd of the stage (the one that wins for
// USER, ENTRYPOINT, CMD, HEALTHCHECK), or false.
func (s *stage) last(cmd string) (instruction, bool) {
	all := s.all(cmd)
	if len(all) == 0 {
		return instruction{}, false
	}
	return all[len(all)-1], true
}

// execForm parses the JSON array of an exec-form ENTRYPOINT, CMD or
// HEALTHCHECK CMD. The shell form is an error: there is no shell in a
// distroless image.
func execForm(args string) ([]string, error) {
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil || len(argv) == 0 {
		return nil, fmt.Errorf("%q is not exec form (a JSON array); distroless has no shell", args)
	}
	return argv, nil
}

// healthcheckCmd returns the argv of the stage's HEALTHCHECK.
func (s *stage) healthcheckCmd() ([]string, error) {
	in, ok := s.last("HEALTHCHECK")
	if !ok {
		return nil, fmt.Errorf("stage %s: no HEALTHCHECK", s.name)
	}
	_, cmd, ok := strings.Cut(in.args, "CMD ")
	if !ok {
		return nil, fmt.Errorf("stage %s: HEALTHCHECK %q has no CMD", s.name, in.args)
	}
	return execForm(strings.TrimSpace(cmd))
}

// binaries returns the file names the stage copies into /usr/local/bin.
func (s *stage) binaries() []string {
	var out []string
	for _, in := range s.all("COPY") {
		var srcs []string
		for f := range strings.FieldsSeq(in.args) {
			if !strings.HasPrefix(f, "--") {
				srcs = append(srcs, f)
			}
		}
		if len(srcs) < 2 {
			continue
		}
		dst := srcs[len(srcs)-1]
		switch {
		case dst == "/usr/local/bin/":
			for _, src := range srcs[:len(srcs)-1] {
				out = append(out, path.Base(src))
			}
		case path.Dir(dst) == "/usr/local/bin":
			out = append(out, path.Base(dst))
		}
	}
	return out
}

// ownedDirs returns the directories the stage copies in with owner uid, as
// "COPY --chown=uid:gid src /dir".
func (s *stage) ownedDirs(uid string) []string {
	var out []string
	for _, in := range s.all("COPY") {
		f := strings.Fields(in.args)
		if slices.ContainsFunc(f, func(a string) bool { return strings.HasPrefix(a, "--chown="+uid+":") }) {
			out = append(out, path.Clean(f[len(f)-1]))
		}
	}
	return out
}

func loadDockerfile(t *testing.T) *dockerfile {
	t.Helper()
	df, err := parseDockerfile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return df
}

// runtimeStages are the images the Dockerfile ships, with the binary that
// is each image's entrypoint.
var runtimeStages = map[string]string{
	"flowlock":   "flowlock-authz",
	"sample-api": "sample-api",
}

func TestDockerfile(t *testing.T) {
	df := loadDockerfile(t)

	if got := df.stages[len(df.stages)-1].name; got != "flowlock" {
		t.Errorf("last stage is %q, want flowlock: a plain `docker build .` must give the service image", got)
	}

	b := df.stage("build")
	if b == nil {
		t.Fatal("no build stage")
	}
	if !strings.HasPrefix(b.from, "golang:1.26") {
		t.Errorf("build stage FROM %s, want golang:1.26 (go.mod's toolchain)", b.from)
	}
	var goBuild string
	for _, in := range b.all("RUN") {
		if strings.Contains(in.args, "go build") {
			goBuild = in.args
		}
	}
	if goBuild == "" {
		t.Fatal("build stage has no go build")
	}
	env := strings.Join(func() []string {
		var s []string
		for _, in := range b.all("ENV") {
			s = append(s, in.args)
		}
		return s
	}(), " ")
	if !strings.Contains(env+" "+goBuild, "CGO_ENABLED=0") {
		t.Error("CGO_ENABLED=0 not set: distroless/static has no libc")
	}
	if !strings.Contains(goBuild, "-trimpath") {
		t.Error("go build without -trimpath")
	}
	// Every package built must exist and be a command.
	var built []string
	for f := range strings.FieldsSeq(goBuild) {
		if strings.HasPrefix(f, "./cmd/") {
			built = append(built, path.Base(f))
			pkg, err := build.ImportDir(filepath.Join(repoRoot, f), 0)
			if err != nil {
				t.Errorf("go build %s: %v", f, err)
			} else if pkg.Name != "main" {
				t.Errorf("go build %s: package %s is not a command", f, pkg.Name)
			}
		}
	}
	for _, want := range []string{"flowlock-authz", "flowlock-sim", "sample-api"} {
		if !slices.Contains(built, want) {
			t.Errorf("go build does not build ./cmd/%s (built %v)", want, built)
		}
	}

	for name, bin := range runtimeStages {
		t.Run(name, func(t *testing.T) {
			s := df.stage(name)
			if s == nil {
				t.Fatalf("no stage %s", name)
			}
			if s.from != distroless {
				t.Errorf("FROM %s, want %s", s.from, distroless)
			}
			if u, ok := s.last("USER"); !ok || (u.args != "nonroot" && u.args != "nonroot:nonroot" && u.args != "65532:65532") {
				t.Errorf("USER %q, want nonroot", u.args)
			}
			bins := s.binaries()
			entry, ok := s.last("ENTRYPOINT")
			if !ok {
				t.Fatal("no ENTRYPOINT")
			}
			argv, err := execForm(entry.args)
			if err != nil {
				t.Fatalf("ENTRYPOINT: %v", err)
			}
			if argv[0] != bin || !slices.Contains(bins, bin) {
				t.Errorf("ENTRYPOINT %v, want %s copied into /usr/local/bin (copied %v)", argv, bin, bins)
			}
			hc, err := s.healthcheckCmd()
			if err != nil {
				t.Fatal(err)
			}
			if hc[0] != bin || len(hc) < 2 || hc[1] != "healthcheck" {
				t.Errorf("HEALTHCHECK CMD %v, want [%s healthcheck ...]", hc, bin)
			}
			if len(s.all("EXPOSE")) == 0 {
				t.Error("no EXPOSE")
			}
		})
	}

	fl := df.stage("flowlock")
	if !slices.Contains(fl.binaries(), "flowlock-sim") {
		t.Error("flowlock image lacks flowlock-sim, the demo's traffic generator")
	}
	if cmd, ok := fl.last("CMD"); !ok || cmd.args != `["serve"]` {
		t.Errorf(`flowlock CMD = %q, want ["serve"]`, cmd.args)
	}
	if !slices.Contains(fl.ownedDirs("65532"), "/var/lib/flowlock") {
		t.Error("flowlock image does not create /var/lib/flowlock owned by nonroot (65532): the state volume would not be writable")
	}
}

func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	ignored := func(p string) bool {
		for _, pat := range patterns {
			if ok, _ := filepath.Match(strings.TrimPrefix(pat, "**/"), path.Base(p)); ok && strings.HasPrefix(pat, "**/") {
				return true
			}
			if ok, _ := filepath.Match(pat, p); ok {
				return true
			}
			if strings.HasPrefix(p, strings.TrimSuffix(pat, "/")+"/") {
				return true
			}
		}
		return false
	}
	for _, p := range []string{".git", ".git/config", ".env", "bin/flowlock-authz", "cmd/x/x.test"} {
		if !ignored(p) {
			t.Errorf(".dockerignore lets %s into the build context", p)
		}
	}
	for _, p := range []string{"go.mod", "go.sum", "cmd/flowlock-authz/main.go", "internal/risk/risk.go", "dashboard/static/index.html"} {
		if ignored(p) {
			t.Errorf(".dockerignore keeps %s out of the build context, but go build needs it", p)
		}
	}
}
