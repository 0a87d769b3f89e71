package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Entry is one quarantine in the shared list. It mirrors the fields of the
// local list's entry; the caller maps between the two.
type Entry struct {
	// ID is the identity, any bytes.
	ID string
	// Since is when the quarantine began; Until when it ends.
	Since, Until time.Time
	// Strikes counts automatic quarantines in the strike window.
	Strikes int
	// Reason is the detector that fired or the operator's note.
	Reason string
	// Score is the risk score (0-100) at admission.
	Score int
	// Manual reports an operator's ban.
	Manual bool
	// Hits counts requests refused by this quarantine, on every replica.
	Hits uint64
}

// Op says what a Change is.
type Op uint8

const (
	// OpResync means changes may have been missed (the subscription was
	// re-established, or the caller fell behind): read the list with All.
	OpResync Op = iota
	// OpPut is an admission, escalation, ban or extension; Entry is the
	// merged entry now in Redis.
	OpPut
	// OpDelete is a release; only Entry.ID is set.
	OpDelete
	// OpHits is a new hit count; Entry.ID and Entry.Hits are set.
	OpHits
)

func (o Op) String() string {
	switch o {
	case OpResync:
		return "resync"
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpHits:
		return "hits"
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Change is one event on the shared list, as Subscribe delivers it.
type Change struct {
	Op    Op
	Entry Entry
}

// The scripts below keep an entry in a hash under qEntry+hash (expiring
// when the quarantine ends) and its end time in the index sorted set, in
// one slot, and publish the change. An event is a version digit, an op
// letter and netstrings (len:bytes), so an identity of any bytes survives.
//
// The quarantine's scripts carry the allow-oom flag: a Redis filled up by
// a flood of identities' timing rings refuses new rings (the replicas fall
// back to local timing) but still takes bans, releases and hit counts, so
// the quarantine stays one list through the flood.
const luaHelpers = `#!lua flags=allow-oom
local function ns(v) v = tostring(v); return #v .. ':' .. v end
local function gt(a, b) if #a ~= #b then return #a > #b end return a > b end
local function expireAt(key, untilUS)
  redis.call('PEXPIREAT', key, (tonumber(string.sub(untilUS, 1, -4)) or 0) + 1000)
end
`

// putScript: KEYS entry, index; ARGV hash, channel, id, since, until,
// strikes, reason, score, manual, hits. It merges with what is there: the
// later Until (with its Since, Reason and Score), the larger Strikes and
// Hits, and Manual if either is; on an Until that does not grow, a manual
// ban's reason still replaces the one there (an operator's ban over a
// longer quarantine, as a local ban does). It returns the event it published, and 1 if this call
// started or lengthened the quarantine (0 if it was there already).
var putScript = newIdempotentScript(luaHelpers + `
local e = KEYS[1]
local since, untilUS, reason, score = ARGV[4], ARGV[5], ARGV[7], ARGV[8]
local strikes, manual, hits = tonumber(ARGV[6]), ARGV[9], tonumber(ARGV[10])
local cur = redis.call('HMGET', e, 'until', 'strikes', 'manual', 'hits', 'since', 'reason', 'score')
local grew = 1
if cur[1] then
  if not gt(untilUS, cur[1]) then
    grew = 0
    local keepReason = cur[6]
    if manual == '1' then keepReason = reason end
    untilUS, since, reason, score = cur[1], cur[5], keepReason, cur[7]
  end
  strikes = math.max(strikes, tonumber(cur[2]) or 0)
  if cur[3] == '1' then manual = '1' end
  hits = math.max(hits, tonumber(cur[4]) or 0)
end
strikes, hits = string.format('%d', strikes), string.format('%d', hits)
redis.call('HSET', e, 'id', ARGV[3], 'since', since, 'until', untilUS, 'strikes', strikes,
  'reason', reason, 'score', score, 'manual', manual, 'hits', hits)
expireAt(e, untilUS)
redis.call('ZADD', KEYS[2], untilUS, ARGV[1])
local ev = '1P' .. ns(ARGV[3]) .. ns(since) .. ns(untilUS) .. ns(strikes) .. ns(reason) .. ns(score) .. ns(manual) .. ns(hits)
redis.call('PUBLISH', ARGV[2], ev)
return {ev, grew}
`)

// deleteScript: KEYS entry, index; ARGV hash, channel, id. It returns
// 1 if there was an entry. The release is published either way, so a
// replica holding a stale entry drops it.
var deleteScript = newIdempotentScript(luaHelpers + `
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], '1D' .. ns(ARGV[3]))
return n
`)

// hitsScript: KEYS entry; ARGV n, channel. It returns the new count, or 0
// (and publishes nothing) when there is no entry.
var hitsScript = newScript(luaHelpers + `
local id = redis.call('HGET', KEYS[1], 'id')
if not id then return 0 end
local h = redis.call('HINCRBY', KEYS[1], 'hits', ARGV[1])
redis.call('PUBLISH', ARGV[2], '1H' .. ns(id) .. ns(h))
return h
`)

// maxReason bounds the reason stored and published.
const maxReason = 256

// Put merges e into the shared list and tells every replica. It returns
// the merged entry. Two replicas admitting the same identity at once both
// land: neither the later Until nor the larger Strikes is lost. Being a
// merge, it is idempotent, and is resent on a broken connection.
func (s *Store) Put(ctx context.Context, e Entry) (Entry, error) {
	merged, _, err := s.PutGrew(ctx, e)
	return merged, err
}

// PutGrew is Put, and also reports whether this call started or lengthened
// the quarantine: when every replica puts the same admission, exactly one
// of them sees true, so that one counts it.
func (s *Store) PutGrew(ctx context.Context, e Entry) (Entry, bool, error) {
	type result struct {
		e    Entry
		grew bool
	}
	r, err := within(ctx, func() (result, error) {
		e, grew, err := s.put(ctx, e)
		return result{e, grew}, err
	})
	return r.e, r.grew, err
}

func (s *Store) put(ctx context.Context, e Entry) (Entry, bool, error) {
	if e.Until.IsZero() || e.Until.UnixMicro() < 1000 {
		return Entry{}, false, errors.New("quarantine put: no until")
	}
	reason := e.Reason
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	h := idHash(e.ID)
	manual := "0"
	if e.Manual {
		manual = "1"
	}
	res, err := s.eval(ctx, putScript, []string{s.keys.qEntry + h, s.keys.qIndex},
		h, s.keys.events, e.ID,
		strconv.FormatInt(max(e.Since.UnixMicro(), 0), 10),
		strconv.FormatInt(e.Until.UnixMicro(), 10),
		strconv.Itoa(max(e.Strikes, 0)), reason, strconv.Itoa(min(max(e.Score, 0), 100)), manual,
		strconv.FormatUint(e.Hits, 10)).ToArray()
	if err != nil {
		return Entry{}, false, fmt.Errorf("quarantine put: %w", err)
	}
	if len(res) != 2 {
		return Entry{}, false, fmt.Errorf("quarantine put: %d values in the answer, want 2", len(res))
	}
	ev, err := res[0].ToString()
	if err != nil {
		return Entry{}, false, fmt.Errorf("quarantine put: %w", err)
	}
	grew, err := res[1].AsInt64()
	if err != nil {
		return Entry{}, false, fmt.Errorf("quarantine put: %w", err)
	}
	c, err := parseChange(ev)
	if err != nil {
		return Entry{}, false, fmt.Errorf("quarantine put: %w", err)
	}
	return c.Entry, grew == 1, nil
}

// ForgetTiming deletes id's ring of request times, so that a released
// client starts over on every replica: a replica that joins later (or
// never fed the client) would otherwise replay the times from before the
// release and quarantine it again.
func (s *Store) ForgetTiming(ctx context.Context, id string) error {
	_, err := within(ctx, func() (struct{}, error) {
		return struct{}{}, s.c.Do(ctx, s.c.B().Del().Key(s.keys.timingKey(id)).Build()).Error()
	})
	if err != nil {
		return fmt.Errorf("forget timing: %w", err)
	}
	return nil
}

// Delete releases id on every replica. It reports whether Redis held an
// entry for it.
func (s *Store) Delete(ctx context.Context, id string) (bool, error) {
	return within(ctx, func() (bool, error) { return s.delete(ctx, id) })
}

func (s *Store) delete(ctx context.Context, id string) (bool, error) {
	h := idHash(id)
	n, err := s.eval(ctx, deleteScript, []string{s.keys.qEntry + h, s.keys.qIndex}, h, s.keys.events, id).AsInt64()
	if err != nil {
		return false, fmt.Errorf("quarantine delete: %w", err)
	}
	return n > 0, nil
}

// AddHits adds n refused requests to id's entry and returns the new
// total, or 0 if id is not quarantined in Redis. The caller sums hits
// locally and adds them once per batch, not once per request: each call
// is also an event to every replica.
func (s *Store) AddHits(ctx context.Context, id string, n uint64) (uint64, error) {
	return within(ctx, func() (uint64, error) { return s.addHits(ctx, id, n) })
}

func (s *Store) addHits(ctx context.Context, id string, n uint64) (uint64, error) {
	if n == 0 {
		return 0, nil
	}
	h := idHash(id)
	total, err := s.eval(ctx, hitsScript, []string{s.keys.qEntry + h}, strconv.FormatUint(n, 10), s.keys.events).AsInt64()
	if err != nil {
		return 0, fmt.Errorf("quarantine hits: %w", err)
	}
	return uint64(max(total, 0)), nil
}

// allPage is how many entries All reads per round trip.
const allPage = 512

// All returns every quarantine standing at now (Until after now), for a
// replica's start and its resync after an outage or a lost subscription.
// It first drops the index members that ended before now.
func (s *Store) All(ctx context.Context, now time.Time) ([]Entry, error) {
	return within(ctx, func() ([]Entry, error) { return s.all(ctx, now) })
}

func (s *Store) all(ctx context.Context, now time.Time) ([]Entry, error) {
	nowUS := strconv.FormatInt(now.UnixMicro(), 10)
	if err := s.c.Do(ctx, s.c.B().Zremrangebyscore().Key(s.keys.qIndex).Min("-inf").Max("("+nowUS).Build()).Error(); err != nil {
		return nil, fmt.Errorf("quarantine all: %w", err)
	}
	// ZSCAN walks the index in pages at O(1) each, whatever the list
	// holds: paging by offset costs O(offset) a page, and paging by score
	// stalls on a run of equal end times (a flood banned in one
	// microsecond). ZSCAN may return a member twice; seen drops repeats.
	var out []Entry
	seen := map[string]bool{}
	cursor := uint64(0)
	for {
		res, err := s.c.Do(ctx, s.c.B().Zscan().Key(s.keys.qIndex).Cursor(cursor).Count(allPage).Build()).AsScanEntry()
		if err != nil {
			return nil, fmt.Errorf("quarantine all: %w", err)
		}
		var hashes []string
		for i := 0; i+1 < len(res.Elements); i += 2 {
			h := res.Elements[i]
			if seen[h] {
				continue
			}
			seen[h] = true
			hashes = append(hashes, h)
		}
		if len(hashes) > 0 {
			cmds := make(rueidis.Commands, len(hashes))
			for i, h := range hashes {
				cmds[i] = s.c.B().Hgetall().Key(s.keys.qEntry + h).Build()
			}
			for _, r := range s.c.DoMulti(ctx, cmds...) {
				m, err := r.AsStrMap()
				if err != nil {
					return nil, fmt.Errorf("quarantine all: %w", err)
				}
				if len(m) == 0 {
					continue // ended between the two reads
				}
				e, err := entryFromMap(m)
				if err != nil {
					return nil, fmt.Errorf("quarantine all: %w", err)
				}
				if e.Until.After(now) {
					out = append(out, e)
				}
			}
		}
		if res.Cursor == 0 {
			return out, nil
		}
		cursor = res.Cursor
	}
}

// entryFromMap decodes an entry hash.
func entryFromMap(m map[string]string) (Entry, error) {
	return decodeEntry(m["id"], m["since"], m["until"], m["strikes"], m["reason"], m["score"], m["manual"], m["hits"])
}

func decodeEntry(id, since, until, strikes, reason, score, manual, hits string) (Entry, error) {
	var e Entry
	var err error
	num := func(name, v string) int64 {
		n, perr := strconv.ParseInt(v, 10, 64)
		if perr != nil && err == nil {
			err = fmt.Errorf("entry field %s %q: not an integer", name, firstLine(v))
		}
		return n
	}
	e.ID = id
	e.Since = time.UnixMicro(num("since", since))
	e.Until = time.UnixMicro(num("until", until))
	e.Strikes = int(num("strikes", strikes))
	e.Reason = reason
	e.Score = int(num("score", score))
	e.Manual = manual == "1"
	e.Hits = uint64(max(num("hits", hits), 0))
	return e, err
}

// parseChange decodes an event published by the scripts above.
func parseChange(msg string) (Change, error) {
	if len(msg) < 2 || msg[0] != '1' {
		return Change{}, fmt.Errorf("event of unknown format %q", firstLine(msg[:min(len(msg), 8)]))
	}
	op, rest := msg[1], msg[2:]
	var f []string
	for rest != "" {
		i := strings.IndexByte(rest, ':')
		if i < 0 {
			return Change{}, errors.New("event: truncated field")
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n < 0 || n > len(rest)-i-1 {
			return Change{}, errors.New("event: bad field length")
		}
		f = append(f, rest[i+1:i+1+n])
		rest = rest[i+1+n:]
	}
	switch {
	case op == 'P' && len(f) == 8:
		e, err := decodeEntry(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7])
		return Change{Op: OpPut, Entry: e}, err
	case op == 'D' && len(f) == 1:
		return Change{Op: OpDelete, Entry: Entry{ID: f[0]}}, nil
	case op == 'H' && len(f) == 2:
		h, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return Change{}, errors.New("event: bad hit count")
		}
		return Change{Op: OpHits, Entry: Entry{ID: f[0], Hits: h}}, nil
	}
	return Change{}, fmt.Errorf("event: unknown op %q with %d fields", op, len(f))
}
