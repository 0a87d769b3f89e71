package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	sigsyaml "sigs.k8s.io/yaml"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// composeHoneypotArgs returns the flags docker-compose.yml runs
// flowlock-honeypot with, its listen addresses replaced by bait and api
// and a file it mounts by the file in the repository: the test runs the
// decoy as the demo does.
func composeHoneypotArgs(t *testing.T, bait, api string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Command []string          `json:"command"`
			Volumes []json.RawMessage `json:"volumes"` // the long form is read, the short one skipped
		} `json:"services"`
	}
	if err := sigsyaml.Unmarshal(data, &compose); err != nil {
		t.Fatal(err)
	}
	svc, ok := compose.Services["flowlock-honeypot"]
	if !ok || len(svc.Command) == 0 {
		t.Fatal("docker-compose.yml: no flowlock-honeypot service with a command")
	}
	args := slices.Clone(svc.Command)
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "--addr":
			args[i+1] = bait
		case "--api-addr":
			args[i+1] = api
		}
		for _, raw := range svc.Volumes {
			var v struct{ Source, Target string }
			if json.Unmarshal(raw, &v) == nil && v.Target != "" && args[i+1] == v.Target {
				args[i+1] = filepath.Join(repoRoot, filepath.FromSlash(v.Source))
			}
		}
	}
	if args[0] != "--addr" {
		t.Fatalf("docker-compose.yml: flowlock-honeypot's command must start with --addr, got %v", args)
	}
	return args
}

// TestDecoyAnswersLikeSampleAPI runs the built sample-api and the built
// flowlock-honeypot with docker-compose.yml's flags side by side, and
// probes both as a bot that suspects a decoy would: paths no API has,
// other methods, query strings, trailing slashes and paths that are not
// clean. Outside the API's routes the two answers are the same, byte for
// byte but the Date; on its route (/data) the decoy still makes its
// documents up, whatever the query string.
func TestDecoyAnswersLikeSampleAPI(t *testing.T) {
	endToEnd(t)
	api := startBinary(t, "sample-api", "--addr", "127.0.0.1:"+flowlocktest.FreePort(t))
	decoy := startBinary(t, "flowlock-honeypot", composeHoneypotArgs(t,
		"127.0.0.1:"+flowlocktest.FreePort(t), "127.0.0.1:"+flowlocktest.FreePort(t))...)
	c := from("127.0.0.1")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	for _, path := range []string{
		"/definitely-not-a-route-8f3a", "/admin", "/.env", "/api/users/42",
		"/data/", "/nope?x=1&y=%3C", "/a%22b%3Cc", "/%FF", "/healthz/",
		"//data", "/a/../data", "/data/./", // not clean: redirected
	} {
		for _, method := range []string{"GET", "HEAD", "OPTIONS", "POST", "DELETE"} {
			want := do(ctx, t, c, method, "http://"+api+path)
			got := do(ctx, t, c, method, "http://"+decoy+path)
			if got != want {
				t.Errorf("%s %s: the decoy answers\n%s\nsample-api answers\n%s", method, path, got, want)
			}
		}
	}

	// The API's route: made-up documents, the same one whatever the query.
	var docs []string
	for _, q := range []string{"", "?page=2"} {
		got := do(ctx, t, c, "GET", "http://"+decoy+"/data"+q)
		var doc struct {
			Items []struct {
				ID   int    `json:"id"`
				Name string `json:"name"`
			} `json:"items"`
		}
		_, body, _ := strings.Cut(got, "\n\n")
		if !strings.HasPrefix(got, "200 application/json") || json.Unmarshal([]byte(body), &doc) != nil || len(doc.Items) == 0 || fromSampleAPI(body) {
			t.Fatalf("GET /data%s: %s; want the decoy's made-up items", q, got)
		}
		items, _ := json.Marshal(doc.Items)
		docs = append(docs, string(items))
	}
	if docs[0] != docs[1] {
		t.Errorf("/data and /data?page=2 give different items: %s, %s", docs[0], docs[1])
	}
	if got := do(ctx, t, c, "HEAD", "http://"+decoy+"/data"); !strings.HasPrefix(got, "200 application/json") || !strings.HasSuffix(got, "\n\n") {
		t.Errorf("HEAD /data: %s; want 200 JSON headers and no body", got)
	}
}

// do sends one request and returns what a client can compare of the
// answer: status, headers but Date, body.
func do(ctx context.Context, t *testing.T, c *http.Client, method, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	var b strings.Builder
	b.WriteString(resp.Status[:3] + " " + resp.Header.Get("Content-Type") + "\n")
	resp.Header.Del("Date")
	resp.Header.Write(&b)
	b.WriteString("\n")
	b.Write(body)
	return b.String()
}

// TestDecoyRefusesBadRoutes: the built decoy refuses a bad --routes or
// --not-found-file at startup, with an error naming the flag.
func TestDecoyRefusesBadRoutes(t *testing.T) {
	endToEnd(t)
	bad := filepath.Join(t.TempDir(), "bad.http")
	if err := os.WriteFile(bad, []byte("<html>not found</html>\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--routes", "data"}, `--routes: pattern "data": must start with /`},
		{[]string{"--routes", "/api/{id}"}, "--routes"},
		{[]string{"--routes", "/" + strings.Repeat("a", 300)}, "--routes"},
		{[]string{"--routes", strings.Repeat("/a,", 300)}, "--routes: more than 256 patterns"},
		{[]string{"--not-found-file", bad}, "--not-found-file: needs --routes"},
		{[]string{"--routes", "/data", "--not-found-file", bad}, "--not-found-file"},
	} {
		args := append([]string{"--addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0"}, tc.args...)
		out, err := flowlocktest.Run(30*time.Second, "", flowlocktest.Bin("flowlock-honeypot"), args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("flowlock-honeypot %s: %v\n%s\nwant an error with %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
}
