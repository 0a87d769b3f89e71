package chaos

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// The state-file attacks of issue 12: a state file an attacker filled
// (a million quarantined addresses), special files in its place, a
// shutdown during a long restore, temporary files left by kills, and a
// disk that fills up under a running service.

// roomy is for services that restore a million entries: 4 GiB of address
// space (Go reserves about 1 GiB of it up front; the restore peaks at about
// 1.2 GB resident).
var roomy = flowlocktest.Limits{AddressSpace: 4 << 30, OpenFiles: 4096}

// writeMillion writes a state file of n quarantines, active for an hour
// from now, as an attacker who made n addresses look like bots leaves it.
func writeMillion(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	now := time.Now().UTC()
	since, until := now.Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339)
	fmt.Fprintf(w, `{"format":"flowlock-quarantine","version":1,"written_at":%q,"entries":[`, since)
	for i := range n {
		if i > 0 {
			w.WriteByte(',')
		}
		fmt.Fprintf(w, "\n"+`{"id":"10.%d.%d.%d","since":%q,"until":%q,"strikes":1,"strike_times":[%q],"reason":"fixed-interval","score":91}`,
			i>>16&0xff, i>>8&0xff, i&0xff, since, until, since)
	}
	w.WriteString("\n]}\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// runRefused runs the service with args under lim, expecting it to exit
// on its own within limit with a non-zero status, and returns its output.
func runRefused(t *testing.T, lim flowlocktest.Limits, limit time.Duration, args ...string) string {
	t.Helper()
	args = append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-format", "json", "--drain-delay", "0s"}, args...)
	cmd := flowlocktest.LimitedCommand(lim, authz(), args...)
	cmd.Env = append(os.Environ(), "FLOWLOCK_CONFIG=")
	p := flowlocktest.StartProcess(t, cmd)
	select {
	case <-p.Done():
	case <-time.After(limit):
		t.Fatalf("still running after %v:\n%s", limit, p.Logs())
	}
	var exit *exec.ExitError
	if err := p.Cmd.Wait(); !errors.As(err, &exit) && p.Cmd.ProcessState.Success() {
		t.Fatalf("exited with success, want a refusal:\n%s", p.Logs())
	}
	return p.Logs()
}

// TestStateFileMillionEntries: a million quarantines restore and the
// service answers within ListenTimeout, under roomy limits, and they are
// in force. Before
// the restore was linear, this took hours.
func TestStateFileMillionEntries(t *testing.T) {
	const n = 1_000_000
	path := filepath.Join(t.TempDir(), "q.json")
	writeMillion(t, path, n)
	begin := time.Now()
	s := flowlocktest.StartLimited(t, roomy, authz(), "--state-file", path)
	took := time.Since(begin)
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.Cmd.Process.Pid))
	peak := ""
	for line := range strings.Lines(string(status)) {
		if strings.HasPrefix(line, "VmHWM:") {
			peak = strings.Join(strings.Fields(line)[1:], " ")
		}
	}
	t.Logf("restored %d entries and listening after %v; peak RSS %s", n, took.Round(time.Millisecond), peak)

	// The List's cap is 1 M in 64 shards of 15,625, which fill unevenly:
	// a file of exactly the cap keeps a little under it.
	code, body := s.API(t, "GET", "/api/v1/quarantine?limit=1", "", "")
	var list struct{ Total int }
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || list.Total < n*99/100 {
		t.Errorf("quarantine after restore = %d %.200s, want about %d entries", code, body, n)
	}
	if !strings.Contains(s.Logs(), fmt.Sprintf(`"entries":%d,`, list.Total)) {
		t.Errorf("restore log does not count the %d entries kept", list.Total)
	}
}

// TestStateFileSpecialFiles: a device or a FIFO as --state-file is refused
// at once with what it is, under the suite's 2 GiB address-space limit,
// which a read would blow through in a second (/dev/zero never ends), and a
// time limit that an open would blow through (a FIFO waits for a writer).
func TestStateFileSpecialFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "q.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"/dev/zero", "is a device, want a regular file"},
		{"/dev/full", "is a device, want a regular file"},
		{fifo, "is a named pipe (FIFO), want a regular file"},
	} {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			out := runRefused(t, bounded, 10*time.Second, "--state-file", tc.path)
			want := fmt.Sprintf("--state-file: state file %q: %s", tc.path, tc.want)
			if !strings.Contains(out, want) {
				t.Errorf("output does not say %q:\n%s", want, out)
			}
		})
	}
}

// TestStateFileSIGTERMDuringRestore: SIGTERM during the restore of a large
// state file stops it: the process exits promptly, saying the restore was
// interrupted, instead of finishing it first (or never, when it was
// quadratic).
func TestStateFileSIGTERMDuringRestore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.json")
	writeMillion(t, path, 1_000_000) // seconds to restore even when linear
	cmd := flowlocktest.LimitedCommand(roomy, authz(), "serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--log-format", "json", "--drain-delay", "0s", "--state-file", path)
	cmd.Env = append(os.Environ(), "FLOWLOCK_CONFIG=")
	p := flowlocktest.StartProcess(t, cmd)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Logs(), `"msg":"starting"`) { // logged just before the restore
		if time.Now().After(deadline) || p.Exited() {
			t.Fatalf("no starting line:\n%s", p.Logs())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // into the restore
	sent := time.Now()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(2 * time.Second):
		t.Fatalf("still running 2s after SIGTERM during the restore:\n%.2000s", p.Logs())
	}
	t.Logf("exited %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
	if out := p.Logs(); !strings.Contains(out, "restore interrupted") || strings.Contains(out, `"msg":"listening"`) {
		t.Errorf("want the restore interrupted, not finished:\n%.2000s", out)
	}
}

// TestStateFileTempLeftovers: temporary files that kills during writes
// left next to the state file (up to the state file's size each, one per
// kill) are removed at startup; files that only look alike are kept.
func TestStateFileTempLeftovers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "q.json")
	big := make([]byte, 10<<20)
	leftovers := []string{".q.json.tmp-1234567890", ".q.json.tmp-42"}
	kept := []string{".q.json.tmp-42.bak", ".other.json.tmp-42", "q.json.tmp-42", ".q.json.tmp-x"}
	for _, name := range append(append([]string{}, leftovers...), kept...) {
		if err := os.WriteFile(filepath.Join(dir, name), big, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := start(t, "--state-file", path)
	for _, name := range leftovers {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", name, err)
		}
	}
	for _, name := range kept {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s removed: %v", name, err)
		}
	}
	if !strings.Contains(s.Logs(), `"removed":2`) {
		t.Errorf("removal not logged with a count:\n%s", s.Logs())
	}
}

// chaosToken is the admin token of the full-disk test.
const chaosToken = "chaos-admin-token-0123456789abcdef"

// fullDisk returns a directory on a filesystem of its own that the test
// can fill: a 64 KiB tmpfs, unmounted when t ends (after the service
// stops). ok is false when mounting is not permitted here.
func fullDisk(t *testing.T) (dir string, ok bool) {
	t.Helper()
	dir = t.TempDir()
	if out, err := flowlocktest.Run(10*time.Second, "", "mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", dir); err != nil {
		t.Logf("mount tmpfs: %v %s", err, out)
		return "", false
	}
	t.Cleanup(func() {
		if out, err := flowlocktest.Run(10*time.Second, "", "umount", dir); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir, true
}

// fill writes to a file in dir until its filesystem is full.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for range 1 << 12 { // 16 MiB at most
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
	t.Fatal("filesystem never filled")
}

// TestStateFileFullDiskBan: when the disk under the state file fills up, a
// ban still takes effect and answers 200 with "persisted": false and the
// reason, never a 500; so do extend and release. The failed writes are
// counted in flowlock_state_writes_total{result="error"}.
func TestStateFileFullDiskBan(t *testing.T) {
	dir, ok := fullDisk(t)
	reason := "no space left on device"
	if !ok {
		// Another real failure: the directory goes away under the service.
		if os.Getenv("CI") != "" {
			t.Log("tmpfs not mountable in CI: using a removed directory instead of a full disk")
		}
		dir, reason = filepath.Join(t.TempDir(), "state"), "no such file or directory"
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s := start(t, "--state-file", filepath.Join(dir, "q.json"), "--admin-token", chaosToken)
	if ok {
		fill(t, dir)
	} else if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}

	check := func(what string, code int, body string) {
		t.Helper()
		var got struct {
			Persisted    *bool  `json:"persisted"`
			PersistError string `json:"persist_error"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &got) != nil || got.Persisted == nil || *got.Persisted {
			t.Errorf("%s on a failing disk = %d %s, want 200 with persisted false", what, code, body)
			return
		}
		if !strings.Contains(got.PersistError, reason) || strings.Contains(got.PersistError, dir) {
			t.Errorf("%s persist_error = %q, want %q without the path", what, got.PersistError, reason)
		}
	}
	code, body := s.API(t, "POST", "/api/v1/quarantine", chaosToken, `{"identity":"198.51.100.23","ttl":"1h","reason":"abuse"}`)
	check("ban", code, body)
	code, body = s.API(t, "GET", "/api/v1/identities/198.51.100.23", "", "")
	if code != 200 || !strings.Contains(body, `"reason":"abuse"`) {
		t.Errorf("ban not in force: %d %s", code, body)
	}
	code, body = s.API(t, "POST", "/api/v1/quarantine/198.51.100.23/extend", chaosToken, `{"by":"1h"}`)
	check("extend", code, body)
	code, body = s.API(t, "DELETE", "/api/v1/quarantine/198.51.100.23", chaosToken, "")
	check("release", code, body)

	code, body = s.API(t, "GET", "/metrics", "", "")
	if code != 200 || !strings.Contains(body, `flowlock_state_writes_total{result="error"} 3`) {
		i := strings.Index(body, "flowlock_state_writes_total")
		t.Errorf("failed writes not counted: %.300s", body[max(i, 0):])
	}
}
