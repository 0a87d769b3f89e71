package redisstore

import (
	"context"
	"crypto/sha1" //nolint:gosec // Redis names scripts by SHA-1; not a security use.
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// MaxTime is the largest request time Merge accepts, in Unix microseconds
// (the year 2262). A ring member is the time times 1000 plus a tiebreak,
// and must fit an int64 so Redis stores it as a compact integer.
const MaxTime = (1<<63 - 1) / 1000

// Observation is what one replica saw of one identity since its last batch.
type Observation struct {
	// ID is the identity, any bytes.
	ID string
	// After is the last request time this replica already fed its local
	// engine for ID, in Unix microseconds; 0 if none.
	After int64
	// Before, if not 0, holds back the stored times at or after it: the
	// caller sets it to its clock minus a settle window (a few batch
	// intervals plus the proxies' clock skew), so a time another replica
	// has not shipped yet is not passed over for good once After moves
	// beyond it. Under a flood that would thin the merged stream at
	// random, which is what makes a metronome look human.
	Before int64
	// Times are the request times seen, in Unix microseconds, in any
	// order; each must be in 1..MaxTime.
	Times []int64
}

// Merged is the identity's stored request times later than the
// Observation's After, oldest first: every replica's, so the caller feeds
// them to its engine and sees the merged stream.
type Merged struct {
	ID    string
	Times []int64
	// Pending counts the stored times held back by Before. The caller
	// keeps the identity in its next batches (with no Times if it saw no
	// more requests) until Pending is 0.
	Pending int
}

// mergeScript adds the request times in ARGV[5] (decimal, comma
// separated: one argument, not one each, saves the client an allocation
// per time) to the identity's ring (a sorted set scored by time), keeps
// the newest ARGV[3], refreshes the idle TTL (ARGV[4] ms; at most 2 min
// while the ring holds fewer than 8 times, too few to score, so that a
// flood of one-request identities leaves Redis soon), and returns the
// number of members at or after ARGV[2] (0: no bound) and, comma
// separated in one string, every member later than ARGV[1] and before
// ARGV[2].
//
// A member is time*1000+k, the lowest k in 0..999 not yet taken, so two
// replicas that saw the same microsecond both count. (So it is not
// idempotent: sent twice, a time would count twice.) The member is an
// integer, which Redis stores in 8 bytes. The arithmetic is done on
// strings: Lua's numbers are doubles and would round it.
var mergeScript = newScript(`
local key = KEYS[1]
for t in string.gmatch(ARGV[5], '%d+') do
  for k = 0, 999 do
    if redis.call('ZADD', key, 'NX', t, t .. string.format('%03d', k)) == 1 then break end
  end
end
local n = redis.call('ZCARD', key)
local cap = tonumber(ARGV[3])
if n > cap then redis.call('ZREMRANGEBYRANK', key, 0, n - cap - 1) end
local ttl = tonumber(ARGV[4])
if n < 8 then ttl = math.min(ttl, 120000) end
redis.call('PEXPIRE', key, ttl)
local upto, pending = '+inf', 0
if ARGV[2] ~= '0' then
  upto = '(' .. ARGV[2]
  pending = redis.call('ZCOUNT', key, ARGV[2], '+inf')
end
local r = redis.call('ZRANGEBYSCORE', key, '(' .. ARGV[1], upto)
return {pending, table.concat(r, ',')}
`)

// Merge sends the batch, one script call per identity in one pipeline
// (routed by slot in a cluster), and returns each identity's merged times
// in the batch's order. An Observation with no Times still returns the
// other replicas' times since After. On error nothing is returned; the
// times already sent may be stored.
//
// The caller runs Merge off the Check path with a deadline of a few
// milliseconds, and keeps one observation per identity per batch: that is
// what keeps Redis at one command per Check or fewer.
func (s *Store) Merge(ctx context.Context, batch []Observation) ([]Merged, error) {
	return within(ctx, func() ([]Merged, error) { return s.merge(ctx, batch) })
}

func (s *Store) merge(ctx context.Context, batch []Observation) ([]Merged, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	ringCap := strconv.Itoa(s.opts.RingSize)
	ttl := strconv.FormatInt(s.opts.IdleTTL.Milliseconds(), 10)
	calls := make([]scriptCall, len(batch))
	// One backing array each for the keys and arguments of the batch.
	keys := make([]string, len(batch))
	argv := make([]string, 5*len(batch))
	var buf []byte
	for i, o := range batch {
		buf = buf[:0]
		for j, t := range o.Times {
			if t < 1 || t > MaxTime {
				return nil, fmt.Errorf("merge %d: request time %d out of range", i, t)
			}
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = strconv.AppendInt(buf, t, 10)
		}
		args := argv[5*i : 5*i+5 : 5*i+5]
		args[0], args[1] = strconv.FormatInt(max(o.After, 0), 10), strconv.FormatInt(max(o.Before, 0), 10)
		args[2], args[3], args[4] = ringCap, ttl, string(buf)
		keys[i] = s.keys.timingKey(o.ID)
		calls[i] = scriptCall{keys: keys[i : i+1 : i+1], args: args}
	}
	res := s.evalMulti(ctx, mergeScript, calls)
	out := make([]Merged, len(batch))
	for i, r := range res {
		m, err := parseMerged(r)
		if err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
		m.ID = batch[i].ID
		out[i] = m
	}
	return out, nil
}

// parseMerged decodes the merge script's reply: {pending, "m1,m2,..."}.
func parseMerged(r rueidis.RedisResult) (Merged, error) {
	arr, err := r.ToArray()
	if err != nil {
		return Merged{}, err
	}
	if len(arr) != 2 {
		return Merged{}, fmt.Errorf("reply of %d elements, want 2", len(arr))
	}
	pending, err := arr[0].AsInt64()
	if err != nil {
		return Merged{}, err
	}
	list, err := arr[1].ToString()
	if err != nil {
		return Merged{}, err
	}
	var times []int64
	if list != "" {
		times = make([]int64, 0, strings.Count(list, ",")+1)
	}
	for list != "" {
		f, rest, _ := strings.Cut(list, ",")
		m, err := strconv.ParseInt(f, 10, 64)
		if err != nil || m < 0 {
			return Merged{}, errors.New("member not an integer")
		}
		times = append(times, m/1000)
		list = rest
	}
	return Merged{Times: times, Pending: int(pending)}, nil
}

// script is a Lua script called by its SHA-1, loaded on first NOSCRIPT.
type script struct {
	src string
	sha string
	// idempotent scripts may run twice with the same effect, so rueidis
	// may resend them on a broken connection (within the caller's ctx).
	idempotent bool
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src)) //nolint:gosec // see import
	return &script{src: src, sha: hex.EncodeToString(sum[:])}
}

// newIdempotentScript is newScript for a script that may run twice.
func newIdempotentScript(src string) *script {
	sc := newScript(src)
	sc.idempotent = true
	return sc
}

// scriptCall is one call of a script.
type scriptCall struct {
	keys []string
	args []string
}

// evalMulti calls sc once per call in one pipeline, with EVALSHA, and
// sends EVAL only for the calls a node answered NOSCRIPT (a new or
// restarted node). Unlike rueidis's Lua.ExecMulti it does not load the
// script on every node before each batch, so a batch costs one command
// per call.
func (s *Store) evalMulti(ctx context.Context, sc *script, calls []scriptCall) []rueidis.RedisResult {
	cmds := make(rueidis.Commands, len(calls))
	for i, c := range calls {
		cmds[i] = s.c.B().Evalsha().Sha1(sc.sha).Numkeys(int64(len(c.keys))).Key(c.keys...).Arg(c.args...).Build()
		if sc.idempotent {
			cmds[i] = cmds[i].ToRetryable()
		}
	}
	res := s.c.DoMulti(ctx, cmds...)
	var again []int
	for i, r := range res {
		if e, ok := rueidis.IsRedisErr(r.Error()); ok && e.IsNoScript() {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return res
	}
	cmds = cmds[:0]
	for _, i := range again {
		c := calls[i]
		cmd := s.c.B().Eval().Script(sc.src).Numkeys(int64(len(c.keys))).Key(c.keys...).Arg(c.args...).Build()
		if sc.idempotent {
			cmd = cmd.ToRetryable()
		}
		cmds = append(cmds, cmd)
	}
	for j, r := range s.c.DoMulti(ctx, cmds...) {
		res[again[j]] = r
	}
	return res
}

// eval calls sc once.
func (s *Store) eval(ctx context.Context, sc *script, keys []string, args ...string) rueidis.RedisResult {
	return s.evalMulti(ctx, sc, []scriptCall{{keys: keys, args: args}})[0]
}
