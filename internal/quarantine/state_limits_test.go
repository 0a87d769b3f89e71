package quarantine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// TestMaxEntryBytes pins the per-entry bound that MaxStateBytes is made of:
// the longest entry WriteState can write (the longest name, every byte of
// it and of a maximal admin reason escaped, the most strike times, the
// longest times) fits in maxEntryBytes.
func TestMaxEntryBytes(t *testing.T) {
	long := time.Unix(0, 1<<63-1).UTC() // 2262-04-11T23:47:16.854775807Z
	fe := fileEntry{
		ID:          "name:" + strings.Repeat("<", identity.MaxNameLen),
		Since:       long,
		Until:       long,
		Strikes:     maxStrikes,
		StrikeTimes: slices.Repeat([]time.Time{long}, maxStrikes),
		Reason:      strings.Repeat("<", 200),
		Score:       255,
		Manual:      true,
	}
	b, err := json.Marshal(fe)
	if err != nil {
		t.Fatal(err)
	}
	if len(b)+2 > maxEntryBytes { // +2: the comma and newline between entries
		t.Errorf("longest entry is %d bytes, more than maxEntryBytes %d", len(b)+2, maxEntryBytes)
	}
}

// TestLoadFileSpecialFiles: anything but a regular file is refused at once
// with what it is, without reading it (a device never ends) or waiting on
// it (a FIFO blocks an open until a writer comes), and the List is kept.
func TestLoadFileSpecialFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "q.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"/dev/zero", "is a device, want a regular file"},
		{"/dev/full", "is a device, want a regular file"},
		{"/dev/null", "is a device, want a regular file"},
		{fifo, "is a named pipe (FIFO), want a regular file"},
	} {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			if _, err := os.Stat(tc.path); err != nil {
				t.Fatalf("%s: %v", tc.path, err) // every Linux has these
			}
			l, _ := sampleList(t)
			before := l.Snapshot(t0)
			done := make(chan error, 1)
			go func() { _, err := LoadFile(t.Context(), tc.path, l, t0); done <- err }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
					t.Errorf("LoadFile(%s) error = %v, want it to name the file and say %q", tc.path, err, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("LoadFile(%s) still running after 5s", tc.path)
			}
			if !slices.Equal(l.Snapshot(t0), before) {
				t.Error("a refused LoadFile changed the List")
			}
		})
	}
}

// TestLoadFileTooLarge: a file longer than any state file of the List's
// cap is refused before it is read, with the numbers.
func TestLoadFileTooLarge(t *testing.T) {
	l := New(Options{MaxEntries: 10})
	path := filepath.Join(t.TempDir(), "q.json")
	limit := MaxStateBytes(10)
	if err := os.WriteFile(path, bytes.Repeat([]byte{' '}, int(limit)+1), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(t.Context(), path, l, t0)
	want := fmt.Sprintf("%d bytes, more than the %d a state file of 10 entries can be", limit+1, limit)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("LoadFile error = %v, want %q", err, want)
	}
	// At the limit it is read (and refused as empty, which it is).
	if err := os.Truncate(path, limit); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(t.Context(), path, l, t0); err == nil || !strings.Contains(err.Error(), "empty file") {
		t.Errorf("LoadFile at the limit: %v, want it read", err)
	}
}

// TestLoadFileCancelled: a shutdown during a restore stops it, and the List
// is left as it was.
func TestLoadFileCancelled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.json")
	if err := os.WriteFile(path, stateText(5000), 0o600); err != nil {
		t.Fatal(err)
	}
	l, _ := sampleList(t)
	before := l.Snapshot(t0)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := LoadFile(ctx, path, l, t0)
	if err == nil || !strings.Contains(err.Error(), "restore interrupted") {
		t.Errorf("LoadFile with a cancelled context = %v, want it interrupted", err)
	}
	if !slices.Equal(l.Snapshot(t0), before) {
		t.Error("an interrupted LoadFile changed the List")
	}
	// Cancelled while decoding entries: readState looks at ctx too.
	data := stateText(5000)
	if _, err := l.readState(ctx, data, t0); err == nil || !strings.Contains(err.Error(), "restore interrupted at entry 1") {
		t.Errorf("readState with a cancelled context = %v", err)
	}
}

// TestRemoveTemps: the leftovers of killed writes of this state file go;
// everything else stays, however similar its name.
func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "q.json")
	leftovers := []string{".q.json.tmp-123", ".q.json.tmp-4294967295"}
	kept := []string{
		"q.json",
		".q.json.tmp-",          // no digits
		".q.json.tmp-12x",       // not os.CreateTemp's
		".q.json.tmp-1.bak",     // a copy someone made
		".other.json.tmp-123",   // another state file's
		"q.json.tmp-123",        // no leading dot
		".q.json.tmp-99/",       // a directory (created below)
		".q.json.tmp-77",        // a symbolic link (created below)
		".q.jsonx.tmp-123",      // a longer name
		"..q.json.tmp-123",      // a longer name
		".q.json.tmp-123.tmp-1", // a longer name
	}
	for _, name := range append(slices.Clone(leftovers), kept...) {
		switch {
		case strings.HasSuffix(name, "/"):
			if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
				t.Fatal(err)
			}
		case name == ".q.json.tmp-77":
			if err := os.Symlink("q.json", filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	removed, err := RemoveTemps(path)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	if !slices.Equal(removed, leftovers) {
		t.Errorf("RemoveTemps removed %q, want %q", removed, leftovers)
	}
	for _, name := range kept {
		if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v, want it kept", name, err)
		}
	}
	if removed, err := RemoveTemps(filepath.Join(dir, "none", "q.json")); err != nil || removed != nil {
		t.Errorf("RemoveTemps in a missing directory = %q, %v; want nothing", removed, err)
	}
}

// TestSaveFileTempsAreRemoved: what RemoveTemps matches is what SaveFile
// creates, so a kill between the two is cleaned up.
func TestSaveFileTempsAreRemoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "q.json")
	f, err := os.CreateTemp(dir, ".q.json.tmp-*") // SaveFile's pattern
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	removed, err := RemoveTemps(path)
	if err != nil || len(removed) != 1 || removed[0] != filepath.Base(f.Name()) {
		t.Errorf("RemoveTemps = %q, %v; want %s", removed, err, filepath.Base(f.Name()))
	}
}

// TestReadStateReason: a control character in a reason is refused with
// the line and what it is; an invisible or bidi character is shown as
// "\u{XXXX}", so that it cannot disguise the text around it.
func TestReadStateReason(t *testing.T) {
	const head = `{"format":"flowlock-quarantine","version":1,"entries":[` + "\n"
	entry := func(reason string) string {
		b, _ := json.Marshal(reason)
		return `{"id":"192.0.2.1","since":"2026-11-26T10:00:00Z","until":"2026-11-26T11:00:00Z","strikes":1,"reason":` + string(b) + `}`
	}
	ok := `{"id":"192.0.2.9","since":"2026-11-26T10:00:00Z","until":"2026-11-26T11:00:00Z","strikes":1}`
	for _, tc := range []struct{ reason, want string }{
		{"bell\a", "line 3: entry 2: reason has control character U+0007 at byte 4"},
		{"new\nline", "line 3: entry 2: reason has control character U+000A at byte 3"},
		{"esc\x1b[31m", "reason has control character U+001B"},
		{"c1\u0085", "reason has control character U+0085"},
		{"del\x7f", "reason has control character U+007F"},
	} {
		l := New(Options{})
		err := l.ReadState(strings.NewReader(head+ok+",\n"+entry(tc.reason)+"\n]}"), t0)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("reason %q: error %v, want %q", tc.reason, err, tc.want)
		}
	}
	// Invalid UTF-8 arrives as U+FFFD (encoding/json replaces it): shown.
	l := New(Options{})
	if err := l.ReadState(strings.NewReader(head+strings.Replace(ok, `"strikes":1`, "\"reason\":\"bad \xff\"", 1)+"\n]}"), t0); err != nil {
		t.Errorf("invalid UTF-8 reason: %v", err)
	}

	for reason, want := range map[string]string{
		"abuse\u202egnp.exe":      `abuse\u{202E}gnp.exe`,
		"zero\u200bwidth":         `zero\u{200B}width`,
		"\ufeffbom":               `\u{FEFF}bom`,
		"line\u2028sep":           `line\u{2028}sep`,
		"manual ban, día 2 €":     "manual ban, día 2 €",
		`abuse ticket "42" <b>&c`: `abuse ticket "42" <b>&c`,
	} {
		l = New(Options{})
		if err := l.ReadState(strings.NewReader(head+entry(reason)+"\n]}"), t0); err != nil {
			t.Errorf("reason %q: %v", reason, err)
			continue
		}
		e, found := l.Check(ipID("192.0.2.1"), t0)
		if !found || e.Reason != want {
			t.Errorf("reason %q restored as %q, want %q", reason, e.Reason, want)
		}
	}
}

// errNoneFound is what locate returns when it finds nothing wrong.
var errNoneFound = errors.New("none found")

// FuzzReadStateLocate: the fast decoder and locate, which says where an
// error is, agree on which files are good, so every refused file gets an
// error with its position and no good file is refused.
func FuzzReadStateLocate(f *testing.F) {
	src, _ := sampleList(f)
	var good bytes.Buffer
	if err := src.WriteState(&good, t0); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add([]byte(`{"format":"flowlock-quarantine","version":1,"entries":null}`))
	f.Add([]byte(`{"FORMAT":"flowlock-quarantine","Version":1,"x":[1,{}],"Entries":[]}`))
	f.Add([]byte(`{"format":"flowlock-quarantine","version":1,"entries":5}`))
	f.Add([]byte(`{"format":"flowlock-quarantine","version":1,"entries":[],"entries":[]}`))
	f.Add([]byte(`{"format":"flowlock-quarantine","version":1}` + "\n{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l := New(Options{MaxEntries: 100})
		_, err := l.readState(t.Context(), data, t0)
		loc := l.locate(t.Context(), data, t0, errNoneFound)
		switch {
		case err == nil && loc != errNoneFound:
			t.Fatalf("readState accepted a file locate refuses: %v", loc)
		case err != nil && loc == errNoneFound && !errors.Is(err, errTwoEntries) && len(bytes.TrimSpace(data)) > 0:
			t.Fatalf("readState refused a file locate accepts: %v", err)
		}
	})
}

// FuzzAppendEntry: the hand-written entry encoder writes what json.Marshal
// writes, byte for byte, for any identity and reason text.
func FuzzAppendEntry(f *testing.F) {
	f.Add("203.0.113.7", `abuse ticket "42" <b>&c \ é`, int64(1), false)
	f.Add("name:\u2028x", "\x00\x1f\x7f\u2029\xff\u202e", int64(-1<<62), true)
	f.Fuzz(func(t *testing.T, id, reason string, ns int64, manual bool) {
		v := time.Unix(0, ns).UTC()
		fe := fileEntry{ID: id, Since: v, Until: v.Add(time.Hour), Strikes: 2, StrikeTimes: []time.Time{v, v}, Reason: reason, Score: 91, Manual: manual}
		want, err := json.Marshal(fe)
		if err != nil {
			t.Skip(err) // a time json.Marshal refuses; the List never holds one
		}
		if got := appendEntry(nil, &fe); !bytes.Equal(got, want) {
			t.Fatalf("appendEntry =\n%s\njson.Marshal =\n%s", got, want)
		}
	})
}
