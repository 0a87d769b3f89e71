package quarantine

import (
	"bufio"
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/untrusted"
)

// The state file is one JSON object:
//
//	{"format":"flowlock-quarantine","version":1,"written_at":"2026-11-26T10:00:00Z","entries":[
//	{"id":"203.0.113.7","since":"…","until":"…","strikes":2,"strike_times":["…","…"],"reason":"fixed-interval","score":91},
//	{"id":"2001:db8:1:2::/64","since":"…","until":"…","strikes":0,"reason":"abuse ticket 42","score":0,"manual":true}
//	]}
//
// with one entry per line, sorted by identity. Identities are written as
// identity.ID text (a grouped IPv6 client keeps its prefix length; a name
// that looks like an address is written "name:…"). Times are RFC 3339 UTC.
// "strikes" is Entry.Strikes; "strike_times" is the strike history within
// StrikeWindow, which is what escalates a returning client. An entry whose
// quarantine is over is kept while it has strike history. Readers refuse a
// file whose "format" or "version" they do not know.
const (
	stateFormat  = "flowlock-quarantine"
	stateVersion = 1
)

// fileEntry is one entry of the state file.
type fileEntry struct {
	ID          string      `json:"id"`
	Since       time.Time   `json:"since"`
	Until       time.Time   `json:"until"`
	Strikes     int         `json:"strikes"`
	StrikeTimes []time.Time `json:"strike_times,omitempty"`
	Reason      string      `json:"reason,omitempty"`
	Score       uint8       `json:"score"`
	Manual      bool        `json:"manual,omitempty"`
}

// WriteState writes the List as a state file (format above): the active
// quarantines at now and the strike history still within StrikeWindow.
// Each shard is copied under its lock, so a concurrent mutation may or may
// not be included.
func (l *List) WriteState(w io.Writer, now time.Time) error {
	t := now.UnixNano()
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	items := make([]fileEntry, 0, n+n/64) // a hint: the List may change meanwhile
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.RLock()
		for _, r := range s.m {
			strikes := r.liveStrikes(t, l.opts.StrikeWindow)
			if r.until <= t && len(strikes) == 0 {
				continue
			}
			fe := fileEntry{
				ID:      idText(r.id),
				Since:   time.Unix(0, r.since).UTC(),
				Until:   time.Unix(0, r.until).UTC(),
				Strikes: r.strikes,
				Reason:  r.reason,
				Score:   r.score,
				Manual:  r.manual,
			}
			for _, st := range strikes {
				fe.StrikeTimes = append(fe.StrikeTimes, time.Unix(0, st).UTC())
			}
			items = append(items, fe)
		}
		s.mu.RUnlock()
	}
	// Sort pointers: moving the entries themselves costs more than the
	// comparisons at a million.
	order := make([]*fileEntry, len(items))
	for i := range items {
		order[i] = &items[i]
	}
	slices.SortFunc(order, func(a, b *fileEntry) int { return strings.Compare(a.ID, b.ID) })

	bw := bufio.NewWriterSize(w, 64<<10)
	head := struct {
		Format    string    `json:"format"`
		Version   int       `json:"version"`
		WrittenAt time.Time `json:"written_at"`
	}{stateFormat, stateVersion, now.UTC()}
	b, err := json.Marshal(head)
	if err != nil {
		return err
	}
	bw.Write(b[:len(b)-1]) // without the closing brace
	bw.WriteString(`,"entries":[`)
	var line []byte
	for i, fe := range order {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.WriteByte('\n')
		line = appendEntry(line[:0], fe)
		bw.Write(line)
	}
	bw.WriteString("\n]}\n")
	return bw.Flush()
}

// appendEntry appends fe as json.Marshal writes it, field for field, without
// reflection: a million entries are written at startup, after changes and
// twice at shutdown, inside the platform's grace period.
func appendEntry(b []byte, fe *fileEntry) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, fe.ID)
	b = append(b, `,"since":`...)
	b = appendTime(b, fe.Since)
	b = append(b, `,"until":`...)
	b = appendTime(b, fe.Until)
	b = append(b, `,"strikes":`...)
	b = strconv.AppendInt(b, int64(fe.Strikes), 10)
	if len(fe.StrikeTimes) > 0 {
		b = append(b, `,"strike_times":[`...)
		for i, st := range fe.StrikeTimes {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendTime(b, st)
		}
		b = append(b, ']')
	}
	if fe.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendString(b, fe.Reason)
	}
	b = append(b, `,"score":`...)
	b = strconv.AppendUint(b, uint64(fe.Score), 10)
	if fe.Manual {
		b = append(b, `,"manual":true`...)
	}
	return append(b, '}')
}

// appendTime appends v as time.Time.MarshalJSON does; every time the List
// holds is in its range.
func appendTime(b []byte, v time.Time) []byte {
	b = append(b, '"')
	b = v.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendString appends s as a JSON string, escaped as json.Marshal escapes
// it: quotes, backslashes, control characters, <, > and &, U+2028 and
// U+2029, and invalid UTF-8 as U+FFFD.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// idText returns id as the state file writes it.
func idText(id identity.ID) string {
	b, _ := id.MarshalText() // never fails
	return string(b)
}

// ReadState replaces the List's contents with a state file read from r.
// Entries whose quarantine is over at now and whose strikes have all left
// the StrikeWindow are dropped; quarantines that ran out while the file was
// on disk are not counted as expirations by Sweep. MaxEntries applies as if
// the entries were admitted one by one. On any error the List is unchanged;
// errors give the line of the problem where there is one. Entries keep the
// IPv6 prefix length they were written with: call Regroup to follow a
// changed --ipv6-prefix.
func (l *List) ReadState(r io.Reader, now time.Time) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	_, err = l.readState(context.Background(), data, now)
	return err
}

// ctxCheckEvery is how many entries readState decodes between looks at its
// context: often enough to stop within milliseconds, rare enough to cost
// nothing.
const ctxCheckEvery = 1024

// readState is ReadState on bytes; it returns the number of entries kept.
// It stops with an error when ctx is done.
//
// A good file is decoded in one pass and no position is worked out. Only
// when something is wrong does locate go through the file again, entry by
// entry, to say on which line: counting lines from the start for every
// entry made a restore quadratic (a million entries took hours).
func (l *List) readState(ctx context.Context, data []byte, now time.Time) (int, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return 0, errors.New("empty file, want a JSON object with a format and a version")
	}
	// Entries are decoded one at a time into one fileEntry, so a restore
	// holds the file and the List, not a third copy of either.
	t := now.UnixNano()
	b := l.newBuild(bytes.Count(data, []byte(`"id"`))) // about one per entry
	var format *string
	var version *int
	dec := json.NewDecoder(bytes.NewReader(data))
	entries, n := false, 0
	err := func() error {
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			return errors.New("not a JSON object")
		}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := tok.(string)
			switch {
			case strings.EqualFold(key, "format"): // as encoding/json matches names
				if err := dec.Decode(&format); err != nil {
					return err
				}
			case strings.EqualFold(key, "version"):
				if err := dec.Decode(&version); err != nil {
					return err
				}
			case strings.EqualFold(key, "entries"):
				if entries {
					// encoding/json would keep the last; WriteState writes one.
					return errTwoEntries
				}
				entries = true
				if tok, err := dec.Token(); err != nil || (tok != json.Delim('[') && tok != nil) {
					return errors.New(`"entries" is not an array`)
				} else if tok == nil {
					continue // null: no entries
				}
				for dec.More() {
					if n%ctxCheckEvery == 0 && ctx.Err() != nil {
						return fmt.Errorf("restore interrupted at entry %d: %w", n+1, context.Cause(ctx))
					}
					n++
					var fe fileEntry
					if err := dec.Decode(&fe); err != nil {
						return err
					}
					r, err := l.recordFromFile(fe, t)
					if err != nil {
						return err
					}
					if b.seen(r.id) {
						return errors.New("duplicate identity")
					}
					b.add(r, t)
				}
				if _, err := dec.Token(); err != nil { // ']'
					return err
				}
			default: // unknown fields are ignored, as encoding/json does
				var skip json.RawMessage
				if err := dec.Decode(&skip); err != nil {
					return err
				}
			}
		}
		if _, err := dec.Token(); err != nil { // '}'
			return err
		}
		if _, err := dec.Token(); err != io.EOF {
			return errors.New("data after the object")
		}
		return nil
	}()
	if err != nil {
		if ctx.Err() != nil {
			return 0, err
		}
		return 0, l.locate(ctx, data, now, err)
	}
	if err := checkHead(format, version); err != nil {
		return 0, err
	}
	return l.install(b), nil
}

// errTwoEntries refuses a file with two "entries" fields, which only a hand
// edit can make: which one was meant?
var errTwoEntries = errors.New(`two "entries" fields`)

// locate returns the first error in data, as readState's fast path found
// fast, with its line: it decodes the file again entry by entry, keeping
// byte offsets and turning one into a line only for the error.
func (l *List) locate(ctx context.Context, data []byte, now time.Time, fast error) error {
	var head struct {
		Format  *string `json:"format"`
		Version *int    `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return jsonError(data, 0, err)
	}
	if err := checkHead(head.Format, head.Version); err != nil {
		return err
	}
	var body struct {
		Entries []json.RawMessage `json:"entries"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		return jsonError(data, 0, err)
	}
	t := now.UnixNano()
	first := make(map[identity.ID]int, len(body.Entries)) // byte offsets
	pos := 0
	for i, raw := range body.Entries {
		// RawMessage holds the exact input bytes, and entries are in
		// order, so the next match is this entry, a few bytes on.
		off := pos
		if j := bytes.Index(data[pos:], raw); j >= 0 {
			off = pos + j
			pos = off + len(raw)
		}
		if i%ctxCheckEvery == 0 && ctx.Err() != nil {
			return fmt.Errorf("restore interrupted at entry %d: %w", i+1, context.Cause(ctx))
		}
		var fe fileEntry
		if err := json.Unmarshal(raw, &fe); err != nil {
			line, _ := lineCol(data, off+valueErrorOffset(err))
			return fmt.Errorf("line %d: entry %d: %s", line, i+1, valueError(err))
		}
		r, err := l.recordFromFile(fe, t)
		if err != nil {
			line, _ := lineCol(data, off)
			return fmt.Errorf("line %d: entry %d: %w", line, i+1, err)
		}
		if prevOff, dup := first[r.id]; dup {
			line, _ := lineCol(data, off)
			prev, _ := lineCol(data, prevOff)
			return fmt.Errorf("line %d: entry %d: identity %q appears twice (also line %d)", line, i+1, untrusted.Clip(fe.ID, 64), prev)
		}
		first[r.id] = off
	}
	return fast // not found again: say what the fast path saw
}

// checkHead checks a state file's format and version fields.
func checkHead(format *string, version *int) error {
	switch {
	case format == nil:
		return errors.New(`no "format" field: not a Flow Lock quarantine state file`)
	case *format != stateFormat:
		return fmt.Errorf("format %q: not a Flow Lock quarantine state file (want %q)", untrusted.Clip(*format, 64), stateFormat)
	case version == nil:
		return errors.New(`no "version" field`)
	case *version != stateVersion:
		return fmt.Errorf("unsupported format version %d (this build reads version %d)", *version, stateVersion)
	}
	return nil
}

// build is a List's contents being restored, in shards of its own, so that
// the List is untouched until install.
type build struct {
	l      *List
	shards []shard
	ids    map[identity.ID]struct{} // every identity read, kept or not
}

// newBuild returns an empty build with l's shard layout and limits, its
// maps sized for about hint entries (growing a map of a million costs more
// than filling it).
func (l *List) newBuild(hint int) *build {
	hint = min(hint, 2*l.opts.MaxEntries)
	b := &build{l: l, shards: make([]shard, len(l.shards)), ids: make(map[identity.ID]struct{}, hint)}
	for i := range b.shards {
		b.shards[i].m = make(map[identity.ID]*record, min(hint/len(b.shards), l.shards[i].limit))
		b.shards[i].limit = l.shards[i].limit
	}
	return b
}

// seen reports whether id was read before, and remembers it.
func (b *build) seen(id identity.ID) bool {
	if _, dup := b.ids[id]; dup {
		return true
	}
	b.ids[id] = struct{}{}
	return false
}

// add puts r, a record of its own, into the build, unless it is over at t
// with no strikes left. MaxEntries applies as if the entries were admitted
// one by one.
func (b *build) add(r *record, t int64) {
	if r.until <= t && len(r.strikeT) == 0 {
		return // fully expired
	}
	s := &b.shards[b.l.shardIndex(r.id)]
	for len(s.m) >= s.limit && len(s.h) > 0 {
		s.evictLocked(t) // as insertLocked does
	}
	r.state = stateEnded
	s.m[r.id] = r
	heap.Push(&s.h, r)
	if r.until > t {
		s.startLocked(r)
	}
}

// install replaces l's contents by b's and returns how many entries it
// holds.
func (l *List) install(b *build) int {
	loaded := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
	}
	for i := range l.shards {
		s, f := &l.shards[i], &b.shards[i]
		s.m, s.h, s.active = f.m, f.h, f.active
		s.evictedHistory += f.evictedHistory
		s.evictedActive += f.evictedActive
		loaded += len(f.m)
	}
	l.wide.Store(nil) // the entries are as written until Regroup
	for i := range l.shards {
		l.shards[i].mu.Unlock()
	}
	l.notify()
	return loaded
}

// recordFromFile validates one file entry and returns it as a record, with
// strikes outside the window at t dropped.
func (l *List) recordFromFile(fe fileEntry, t int64) (*record, error) {
	var id identity.ID
	if err := id.UnmarshalText([]byte(fe.ID)); err != nil {
		return nil, err
	}
	if err := checkTime("since", fe.Since); err != nil {
		return nil, err
	}
	if err := checkTime("until", fe.Until); err != nil {
		return nil, err
	}
	if fe.Until.Before(fe.Since) {
		return nil, fmt.Errorf("until %s is before since %s", fe.Until.Format(time.RFC3339), fe.Since.Format(time.RFC3339))
	}
	if fe.Strikes < 0 || fe.Strikes > maxStrikes {
		return nil, fmt.Errorf("strikes %d out of range 0-%d", fe.Strikes, maxStrikes)
	}
	reason, err := fileReason(fe.Reason)
	if err != nil {
		return nil, err
	}
	r := &record{
		id:      id.Clone(),
		since:   fe.Since.UnixNano(),
		until:   fe.Until.UnixNano(),
		strikes: fe.Strikes,
		reason:  reason,
		score:   fe.Score,
		manual:  fe.Manual,
	}
	for _, st := range fe.StrikeTimes {
		if err := checkTime("strike time", st); err != nil {
			return nil, err
		}
		r.addStrike(st.UnixNano())
	}
	r.pruneStrikes(t, l.opts.StrikeWindow)
	return r, nil
}

// fileReason checks the reason of a file entry. Control characters (C0,
// DEL, C1) are refused: nothing in Flow Lock writes them (the admin API
// refuses them, the detector's reasons are fixed), so they mean the file was
// edited or damaged, and they would break log lines and the dashboard.
// (encoding/json has already turned invalid UTF-8 into U+FFFD.) Invisible
// and bidi format characters (Unicode Cf, such as U+200B and U+202E, and the
// line and paragraph separators) are escaped as "\u{202E}" instead, the way
// untrusted.Visible shows them: earlier
// versions accepted them from the admin API, so an honest file may hold
// one, and refusing to start over text that only misleads on screen would
// be worse than showing it plainly.
func fileReason(s string) (string, error) {
	if !untrusted.Printable(s) {
		for i, r := range s {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				return "", fmt.Errorf("reason has control character U+%04X at byte %d; Flow Lock never writes one", r, i)
			}
		}
		return "", errors.New("reason is not valid UTF-8")
	}
	if untrusted.Plain(s) && !strings.ContainsFunc(s, hiddenRune) {
		return s, nil
	}
	var b strings.Builder
	for _, r := range s {
		if hiddenRune(r) {
			fmt.Fprintf(&b, "\\u{%04X}", r) // as untrusted.Visible shows it
			continue
		}
		b.WriteRune(r)
	}
	return b.String(), nil
}

// hiddenRune reports whether r changes how text around it reads without
// showing itself: a format character (Cf: bidi controls, zero-width
// characters, the byte order mark) or a line or paragraph separator.
func hiddenRune(r rune) bool {
	return unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}

// The List keeps times as Unix nanoseconds; these are the ones that fit.
var minTime, maxTime = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)

// checkTime refuses a missing time or one the List cannot hold. Every time
// the List holds passes, so whatever WriteState writes, ReadState reads.
func checkTime(what string, v time.Time) error {
	if v.IsZero() {
		return fmt.Errorf("no %s time", what)
	}
	if v.Before(minTime) || v.After(maxTime) {
		return fmt.Errorf("%s %s out of range (years %d-%d)", what, v.Format(time.RFC3339), minTime.Year(), maxTime.Year())
	}
	return nil
}

// jsonError describes a decoding error of data with a line and, for syntax
// errors, a column. The value decoded started at byte offset base.
func jsonError(data []byte, base int, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off := base + int(se.Offset) - 1 // Offset counts the bad byte
		line, col := lineCol(data, off)
		msg := se.Error()
		if off >= len(data)-1 && strings.Contains(msg, "unexpected end") {
			msg += " (truncated file?)"
		}
		return fmt.Errorf("line %d, column %d: %s", line, col, msg)
	}
	line, _ := lineCol(data, base+valueErrorOffset(err))
	return fmt.Errorf("line %d: %s", line, valueError(err))
}

// valueErrorOffset returns where, after base, a value error occurred.
func valueErrorOffset(err error) int {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return max(int(te.Offset)-1, 0)
	}
	return 0
}

// valueError describes a decoding error that is not a syntax error.
func valueError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return "want a JSON object, got " + te.Value
		}
		return fmt.Sprintf("field %q: JSON %s cannot be %s", te.Field, te.Value, te.Type)
	}
	return err.Error()
}

// lineCol returns the 1-based line and column of byte offset off in data.
func lineCol(data []byte, off int) (line, col int) {
	off = min(max(off, 0), len(data))
	before := data[:off]
	line = 1 + bytes.Count(before, []byte{'\n'})
	col = off - bytes.LastIndexByte(before, '\n')
	return line, col
}

// SaveFile writes l's state to path atomically: it writes a temporary file
// in the same directory, syncs it, renames it over path and syncs the
// directory, so a crash leaves either the old file or the new one, never a
// mix. The file has mode 0600. On error the temporary file is removed and
// path is untouched.
func SaveFile(path string, l *List, now time.Time) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("state file %q: %w", path, err)
		}
	}()
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if err := l.WriteState(f, now); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// Bounds of a state file. A state file holds at most MaxEntries entries,
// and one entry is at most maxEntryBytes long as WriteState writes it:
//
//	identity   "name:" + identity.MaxNameLen bytes, each escaped to 6 (\u003c)  ~ 800
//	times      since, until and maxStrikes strike times of 36 bytes          ~ 2,400
//	reason     200 bytes (the admin API's cap), each escaped to 6            ~ 1,200
//	the rest   field names, strikes, score, manual, separators              ~   200
//
// so a file longer than MaxStateBytes(MaxEntries) was not written by Flow
// Lock with this cap, and reading it would only spend memory. The slack
// covers the header and hand edits (indentation).
const (
	maxEntryBytes   = 5 << 10
	stateSlackBytes = 1 << 20
)

// MaxStateBytes is the largest state file LoadFile reads for a List of
// maxEntries: maxEntries × 5 KiB + 1 MiB (5 GiB and a little at the default
// of 1 M). A real file is far smaller: about 150 bytes an entry.
func MaxStateBytes(maxEntries int) int64 {
	return int64(maxEntries)*maxEntryBytes + stateSlackBytes
}

// LoadFile replaces l's contents with the state file at path (see
// ReadState) and returns how many entries it kept: active quarantines and
// strike-only history. A missing file gives (0, nil) and leaves l as it was:
// a first start has no state. Any other problem is an error that names the
// file and says what is wrong, and l is unchanged: unreadable, not a
// regular file (a directory, a device such as /dev/zero, a FIFO, a socket),
// longer than MaxStateBytes(MaxEntries), corrupt, truncated, an unknown
// format or version, or ctx done before the load finished (a shutdown
// signal during a long restore).
//
// The file is opened without blocking, so a FIFO put in its place cannot
// hang startup, and read in chunks that each check ctx.
func LoadFile(ctx context.Context, path string, l *List, now time.Time) (loaded int, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("state file %q: %w", path, err)
		}
	}()
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, withoutPath(err)
	}
	if err := regular(fi); err != nil {
		return 0, err
	}
	// O_NONBLOCK: if the file was swapped for a FIFO since the Stat, open
	// returns at once instead of waiting for a writer; fstat then refuses it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0, withoutPath(err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return 0, withoutPath(err)
	}
	if err := regular(fi); err != nil {
		return 0, err
	}
	limit := MaxStateBytes(l.opts.MaxEntries)
	if fi.Size() > limit {
		return 0, fmt.Errorf("%d bytes, more than the %d a state file of %d entries can be (%d bytes an entry at most); not a Flow Lock state file, or written with a larger cap",
			fi.Size(), limit, l.opts.MaxEntries, maxEntryBytes)
	}
	data, err := readAllContext(ctx, f, fi.Size(), limit)
	if err != nil {
		return 0, err
	}
	return l.readState(ctx, data, now)
}

// regular refuses anything but a regular file, saying what it is.
func regular(fi fs.FileInfo) error {
	m := fi.Mode()
	switch {
	case m.IsRegular():
		return nil
	case m.IsDir():
		return errors.New("is a directory, want a file")
	case m&fs.ModeNamedPipe != 0:
		return errors.New("is a named pipe (FIFO), want a regular file")
	case m&fs.ModeSocket != 0:
		return errors.New("is a socket, want a regular file")
	case m&fs.ModeDevice != 0:
		return errors.New("is a device, want a regular file")
	}
	return fmt.Errorf("is not a regular file (mode %s)", m)
}

// readChunk is how much readAllContext reads between looks at ctx.
const readChunk = 1 << 20

// readAllContext reads r to its end: at most limit bytes, size of them
// expected, stopping when ctx is done.
func readAllContext(ctx context.Context, r io.Reader, size, limit int64) ([]byte, error) {
	data := make([]byte, 0, min(size, limit)+1) // +1: EOF without a regrow
	for {
		if err := context.Cause(ctx); err != nil {
			return nil, fmt.Errorf("restore interrupted after %d bytes: %w", len(data), err)
		}
		if len(data) == cap(data) {
			data = slices.Grow(data, min(readChunk, int(limit+1)-len(data)))
		}
		n, err := r.Read(data[len(data):min(cap(data), len(data)+readChunk)])
		data = data[:len(data)+n]
		if int64(len(data)) > limit {
			return nil, fmt.Errorf("grew past %d bytes while being read, the most a state file of this cap can be", limit)
		}
		if err == io.EOF {
			return data, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
	}
}

// RemoveTemps removes the temporary files a SaveFile for path left behind
// when the process was killed during a write: files in path's directory
// named exactly as SaveFile names them, "."+base(path)+".tmp-" followed by
// os.CreateTemp's random digits. Nothing else is touched: not other
// files' temporaries, not directories, not symbolic links. Call it before
// the first SaveFile. It returns the names it removed; the error is the
// first removal that failed, and the others are still attempted.
func RemoveTemps(path string) (removed []string, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // no directory, no leftovers; the first write says so
	}
	if err != nil {
		return nil, err
	}
	prefix := "." + base + ".tmp-"
	for _, e := range ents {
		name := e.Name()
		digits, ok := strings.CutPrefix(name, prefix)
		if !ok || !allDigits(digits) || !e.Type().IsRegular() {
			continue
		}
		if rerr := os.Remove(filepath.Join(dir, name)); rerr != nil {
			if err == nil {
				err = rerr
			}
			continue
		}
		removed = append(removed, name)
	}
	return removed, err
}

// allDigits reports whether s is 1-20 decimal digits: what os.CreateTemp
// puts for the "*" of a pattern.
func allDigits(s string) bool {
	if len(s) == 0 || len(s) > 20 {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// withoutPath drops the path from an *fs.PathError, which the caller names.
func withoutPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
