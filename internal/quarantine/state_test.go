package quarantine

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// sampleIDs are the identities sampleList fills in.
type sampleIDs struct {
	v4, v6Group, v6Exact, key, keyLikeAddr, history, released identity.ID
}

// sampleList returns a List at t0 holding every kind of entry: automatic and
// manual quarantines of every identity kind, and strike-only history.
func sampleList(t testing.TB) (*List, sampleIDs) {
	t.Helper()
	ids := sampleIDs{
		v4:          ipID("203.0.113.7"),
		v6Group:     identity.FromAddr(netip.MustParseAddr("2001:db8:1:2::9"), 64),
		v6Exact:     identity.FromAddr(netip.MustParseAddr("2001:db8::1"), 128),
		key:         nameID(t, "api-key-123"),
		keyLikeAddr: nameID(t, "10.0.0.1"),
		history:     ipID("192.0.2.1"),
		released:    ipID("192.0.2.2"),
	}
	l := New(Options{})
	l.Admit(ids.v4, t0, "fixed-interval", 91)
	l.Admit(ids.v6Group, at(-time.Hour), "burst", 80)
	l.Admit(ids.v6Group, t0, "burst", 85) // second strike
	l.Ban(ids.v6Exact, t0, 7*24*time.Hour, `abuse ticket "42"`)
	l.Admit(ids.key, at(-time.Minute), "no-pause pace", 99)
	l.Ban(ids.keyLikeAddr, t0, time.Hour, "manual")
	l.Admit(ids.history, at(-2*time.Hour), "periodic", 77) // over, strike remains
	l.Admit(ids.released, at(-time.Minute), "periodic", 70)
	l.Release(ids.released, t0)
	return l, ids
}

func TestSaveLoadRoundTrip(t *testing.T) {
	src, ids := sampleList(t)
	path := filepath.Join(t.TempDir(), "quarantine.json")
	if err := SaveFile(path, src, t0); err != nil {
		t.Fatal(err)
	}
	dst := New(Options{})
	n, err := LoadFile(t.Context(), path, dst, t0)
	if err != nil {
		t.Fatal(err)
	}
	if want := src.Stats().Entries; n != want || n != 7 {
		t.Errorf("LoadFile = %d entries, want %d (7)", n, want)
	}
	if got, want := dst.Snapshot(t0), src.Snapshot(t0); !slices.Equal(got, want) {
		t.Errorf("Snapshot after load =\n%+v\nwant\n%+v", got, want)
	}
	if got, want := dst.Len(), 5; got != want {
		t.Errorf("Len after load = %d, want %d", got, want)
	}
	// Strike history survives: returning clients escalate the same way.
	now := at(time.Hour)
	for _, id := range []identity.ID{ids.history, ids.released, ids.v6Group, ids.v4} {
		got, want := dst.Admit(id, now, "again", 90), src.Admit(id, now, "again", 90)
		if got != want {
			t.Errorf("Admit(%v) after load = %+v, want %+v", id, got, want)
		}
		if got.Strikes < 2 {
			t.Errorf("Admit(%v) after load: strikes = %d, want the history counted", id, got.Strikes)
		}
	}
	// Identity kinds survive exactly.
	for _, id := range []identity.ID{ids.v6Group, ids.v6Exact, ids.key, ids.keyLikeAddr} {
		if _, ok := dst.Check(id, t0); !ok {
			t.Errorf("Check(%#v) after load = not quarantined", id)
		}
	}
	if _, ok := dst.Check(ipID("10.0.0.1"), t0); ok {
		t.Error("the address 10.0.0.1 is quarantined; only the name \"10.0.0.1\" was")
	}
}

func TestSaveFileAtomic(t *testing.T) {
	l, _ := sampleList(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "q.json")
	for range 2 { // create, then replace
		if err := SaveFile(path, l, t0); err != nil {
			t.Fatal(err)
		}
	}
	assertOnly(t, dir, "q.json")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("state file mode = %o, want 600", mode)
	}

	// A failed save names the file and leaves nothing behind.
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err = SaveFile(sub, l, t0) // a non-empty directory cannot be replaced
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", sub)) {
		t.Errorf("SaveFile over a directory = %v, want an error naming it", err)
	}
	assertOnly(t, dir, "q.json", "sub")
	missing := filepath.Join(dir, "no", "such", "q.json")
	if err := SaveFile(missing, l, t0); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("SaveFile into a missing directory = %v, want an error naming the file", err)
	}
}

// assertOnly fails unless dir holds exactly the names.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, de := range des {
		got = append(got, de.Name())
	}
	if !slices.Equal(got, names) {
		t.Errorf("directory holds %q, want %q (a temporary file left behind?)", got, names)
	}
}

func TestWriteStateFormat(t *testing.T) {
	l, _ := sampleList(t)
	var buf bytes.Buffer
	if err := l.WriteState(&buf, t0); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if want := `{"format":"flowlock-quarantine","version":1,"written_at":"2026-11-26T10:00:00Z","entries":[`; lines[0] != want {
		t.Errorf("first line = %s\nwant %s", lines[0], want)
	}
	if last := lines[len(lines)-1]; last != "]}" {
		t.Errorf("last line = %s, want ]}", last)
	}
	entries := lines[1 : len(lines)-1]
	if len(entries) != 7 {
		t.Fatalf("got %d entry lines, want 7:\n%s", len(entries), buf.String())
	}
	var ids []string
	for _, e := range entries {
		id, _, _ := strings.Cut(strings.TrimPrefix(e, `{"id":"`), `"`)
		ids = append(ids, id)
	}
	want := []string{"192.0.2.1", "192.0.2.2", "2001:db8:1:2::/64", "2001:db8::1", "203.0.113.7", "api-key-123", "name:10.0.0.1"}
	if !slices.Equal(ids, want) {
		t.Errorf("entry identities = %q, want %q (sorted, names that look like addresses prefixed)", ids, want)
	}
	if !strings.Contains(buf.String(), `"strike_times":["2026-11-26T09:00:00Z","2026-11-26T10:00:00Z"]`) {
		t.Errorf("the grouped IPv6 client's strike history is missing:\n%s", buf.String())
	}
}

func TestLoadFileMissing(t *testing.T) {
	l, _ := sampleList(t)
	before := l.Snapshot(t0)
	n, err := LoadFile(t.Context(), filepath.Join(t.TempDir(), "none.json"), l, t0)
	if n != 0 || err != nil {
		t.Errorf("LoadFile(missing) = %d, %v; want 0, nil", n, err)
	}
	if !slices.Equal(l.Snapshot(t0), before) {
		t.Error("LoadFile of a missing file changed the List")
	}
}

func TestLoadFileErrors(t *testing.T) {
	var good bytes.Buffer
	src, _ := sampleList(t)
	if err := src.WriteState(&good, t0); err != nil {
		t.Fatal(err)
	}
	const head = `{"format":"flowlock-quarantine","version":1,"entries":[` + "\n"
	const okEntry = `{"id":"192.0.2.1","since":"2026-11-26T10:00:00Z","until":"2026-11-26T11:00:00Z","strikes":1}`
	tests := []struct {
		name    string
		content string // "" with dir set means a directory
		dir     bool
		want    string // in the error, after the quoted path
	}{
		{name: "corrupt", content: "{\"format\":\"flowlock-quarantine\",\n\"version\":1,\n\"entries\":[x]}", want: "line 3, column 12: invalid character 'x'"},
		{name: "truncated", content: good.String()[:good.Len()/2], want: "unexpected end of JSON input (truncated file?)"},
		{name: "empty", content: "", want: "empty file"},
		{name: "whitespace", content: " \n\t", want: "empty file"},
		{name: "wrong version", content: `{"format":"flowlock-quarantine","version":2,"entries":[]}`, want: "unsupported format version 2 (this build reads version 1)"},
		{name: "no version", content: `{"format":"flowlock-quarantine","entries":[]}`, want: `no "version" field`},
		{name: "version not a number", content: `{"format":"flowlock-quarantine","version":"1"}`, want: `line 1: field "version": JSON string cannot be int`},
		{name: "no format", content: `{"version":1,"entries":[]}`, want: "not a Flow Lock quarantine state file"},
		{name: "other format", content: `{"format":"prometheus","version":1}`, want: `format "prometheus": not a Flow Lock quarantine state file`},
		{name: "yaml config", content: "grpc_addr: \":9191\"\n", want: "line 1, column 1: invalid character 'g'"},
		{name: "array", content: `[1,2]`, want: "want a JSON object, got array"},
		{name: "trailing data", content: `{"format":"flowlock-quarantine","version":1}` + "\n{}", want: "line 2, column 1: invalid character '{' after top-level value"},
		{name: "bad identity", content: head + okEntry + ",\n" + strings.Replace(okEntry, "192.0.2.1", "10.0.0.0/8", 1) + "\n]}", want: `line 3: entry 2: identity "10.0.0.0/8"`},
		{name: "duplicate identity", content: head + okEntry + ",\n" + okEntry + "\n]}", want: `line 3: entry 2: identity "192.0.2.1" appears twice (also line 2)`},
		{name: "until before since", content: head + strings.Replace(okEntry, "11:00", "09:00", 1) + "\n]}", want: "line 2: entry 1: until 2026-11-26T09:00:00Z is before since"},
		{name: "bad time", content: head + strings.Replace(okEntry, "2026-11-26T10:00:00Z", "yesterday", 1) + "\n]}", want: `line 2: entry 1: parsing time "yesterday"`},
		{name: "missing time", content: head + `{"id":"192.0.2.1","until":"2026-11-26T11:00:00Z"}` + "\n]}", want: "line 2: entry 1: no since time"},
		{name: "time out of range", content: head + strings.Replace(okEntry, "2026-11-26T11", "9999-11-26T11", 1) + "\n]}", want: "until 9999-11-26T11:00:00Z out of range"},
		{name: "negative strikes", content: head + strings.Replace(okEntry, `"strikes":1`, `"strikes":-1`, 1) + "\n]}", want: "strikes -1 out of range"},
		{name: "score too big", content: head + strings.Replace(okEntry, `"strikes":1`, `"score":300`, 1) + "\n]}", want: `line 2: entry 1: field "score": JSON number 300 cannot be uint8`},
		{name: "directory", dir: true, want: "is a directory, want a file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "q.json")
			var err error
			if tc.dir {
				err = os.Mkdir(path, 0o700)
			} else {
				err = os.WriteFile(path, []byte(tc.content), 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			l, _ := sampleList(t)
			before, beforeStats := l.Snapshot(t0), l.Stats()
			drain(l)

			n, err := LoadFile(t.Context(), path, l, t0)
			if err == nil {
				t.Fatalf("LoadFile = %d, nil; want an error", n)
			}
			prefix := fmt.Sprintf("state file %q: ", path)
			if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tc.want) {
				t.Errorf("LoadFile error =\n%s\nwant it to start %s and contain %s", msg, prefix, tc.want)
			}
			if !slices.Equal(l.Snapshot(t0), before) || l.Stats() != beforeStats {
				t.Error("a failed LoadFile changed the List")
			}
			if drain(l) {
				t.Error("a failed LoadFile signalled Changed")
			}
		})
	}
}

func TestLoadDropsExpired(t *testing.T) {
	src, ids := sampleList(t)
	var buf bytes.Buffer
	if err := src.WriteState(&buf, t0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		loadAt      time.Duration
		wantEntries int
		wantActive  int
	}{
		{"at once", 0, 7, 5},
		// Only the 7-day ban is active; every other identity keeps its strikes.
		{"an hour later", time.Hour, 6, 1},
		// All strikes (24h window) are gone; the ban remains.
		{"two days later", 48 * time.Hour, 1, 1},
		{"eight days later", 8 * 24 * time.Hour, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := New(Options{})
			now := at(tc.loadAt)
			if err := l.ReadState(bytes.NewReader(buf.Bytes()), now); err != nil {
				t.Fatal(err)
			}
			if st := l.Stats(); st.Entries != tc.wantEntries || st.Active != tc.wantActive || l.Len() != tc.wantActive {
				t.Errorf("Stats = %+v, want %d entries, %d active", st, tc.wantEntries, tc.wantActive)
			}
			if got := l.Sweep(now); got != 0 {
				t.Errorf("Sweep right after load = %d expired, want 0 (ended on disk is not news)", got)
			}
			if _, ok := l.Check(ids.v6Exact, now); ok != (tc.wantActive > 0) {
				t.Errorf("Check(7-day ban) = %v, want %v", ok, tc.wantActive > 0)
			}
		})
	}
}

func TestReadStateReplaces(t *testing.T) {
	l, ids := sampleList(t)
	other := New(Options{})
	other.Ban(ipID("198.51.100.9"), t0, time.Hour, "manual")
	var buf bytes.Buffer
	if err := other.WriteState(&buf, t0); err != nil {
		t.Fatal(err)
	}
	if err := l.ReadState(&buf, t0); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Check(ids.v4, t0); ok {
		t.Error("an entry from before ReadState survived it")
	}
	if st := l.Stats(); st.Entries != 1 || st.Active != 1 {
		t.Errorf("Stats after ReadState = %+v, want the one entry read", st)
	}
}

func TestReadStateMaxEntries(t *testing.T) {
	src, _ := sampleList(t)
	var buf bytes.Buffer
	if err := src.WriteState(&buf, t0); err != nil {
		t.Fatal(err)
	}
	l := New(Options{MaxEntries: 3})
	if err := l.ReadState(&buf, t0); err != nil {
		t.Fatal(err)
	}
	// Strike-only history goes first, then the quarantines ending soonest;
	// the 7-day ban, the 1h ban and the 10m quarantine are the longest.
	st := l.Stats()
	if st.Entries != 3 || st.Active != 3 || st.EvictedHistory != 2 || st.EvictedActive != 2 {
		t.Errorf("Stats = %+v, want 3 active entries after 2 history and 2 active evictions", st)
	}
}

func FuzzReadState(f *testing.F) {
	src, _ := sampleList(f)
	var good bytes.Buffer
	if err := src.WriteState(&good, t0); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:good.Len()/2])
	f.Add([]byte(`{"format":"flowlock-quarantine","version":1,"entries":[]}`))
	f.Add([]byte(`{"format":"flowlock-quarantine","version":2}`))
	f.Add([]byte(`{"format":"flowlock-quarantine","version":1,"entries":[{"id":"name:x","since":"2026-11-26T10:00:00+01:00","until":"2026-11-26T11:00:00Z","strike_times":["2026-11-26T09:00:00Z","2026-11-26T09:00:00Z"]}]}`))
	f.Add([]byte(""))
	f.Add([]byte("null"))
	f.Fuzz(func(t *testing.T, data []byte) {
		opts := Options{MaxEntries: 100}
		l := New(opts)
		l.Ban(ipID("198.51.100.1"), t0, time.Hour, "before")
		before, beforeStats := l.Snapshot(t0), l.Stats()

		if err := l.ReadState(bytes.NewReader(data), t0); err != nil {
			if !slices.Equal(l.Snapshot(t0), before) || l.Stats() != beforeStats {
				t.Fatalf("ReadState failed (%v) but changed the List", err)
			}
			return
		}
		// Whatever loads writes back and reads again to the same List.
		var buf bytes.Buffer
		if err := l.WriteState(&buf, t0); err != nil {
			t.Fatal(err)
		}
		again := New(opts)
		if err := again.ReadState(bytes.NewReader(buf.Bytes()), t0); err != nil {
			t.Fatalf("state written after a load does not read back: %v\n%s", err, buf.Bytes())
		}
		if got, want := again.Snapshot(t0), l.Snapshot(t0); !slices.Equal(got, want) {
			t.Fatalf("round trip changed the quarantines:\n%+v\nwant\n%+v", got, want)
		}
		if got, want := again.Stats().Entries, l.Stats().Entries; got != want {
			t.Fatalf("round trip kept %d entries, want %d", got, want)
		}
	})
}

func TestStateExtremeTimes(t *testing.T) {
	// A clock far in the future clamps Until to the last representable
	// instant; whatever the List holds must still load back.
	now := time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New(Options{})
	id := ipID("192.0.2.77")
	want := l.Ban(id, now, MaxBanTTL, "far future")
	l.Admit(ipID("192.0.2.78"), now, "auto", 90)
	var buf bytes.Buffer
	if err := l.WriteState(&buf, now); err != nil {
		t.Fatal(err)
	}
	back := New(Options{})
	if err := back.ReadState(&buf, now); err != nil {
		t.Fatalf("ReadState of a far-future state: %v", err)
	}
	if got, ok := back.Check(id, now); !ok || got != want {
		t.Errorf("Check after load = %+v, %v; want %+v", got, ok, want)
	}
}
