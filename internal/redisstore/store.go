// Package redisstore is the state Flow Lock replicas share through Redis
// or Redis Cluster: each identity's recent request times, merged from
// every replica in request-time order (Merge), and the one quarantine list
// (Put, Delete, AddHits, All, Subscribe).
//
// Nothing here is on the Check path. Every call takes a ctx, and the
// caller gives background calls a deadline of a few milliseconds and
// wraps them in a Breaker, so a slow or absent Redis costs a replica its
// shared view, never a stalled Check. See docs/RATIONALE.md, "Shared state
// on Redis", for why the keys and scripts look as they do.
package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/rueidis"
)

// FormatVersion is the layout of the keys this package writes. Open
// writes it to the format key if absent and refuses a store holding
// another version, so keys written by a newer Flow Lock are never misread.
const FormatVersion = 1

// Defaults for the zero Options fields.
const (
	DefaultKeyPrefix   = "flowlock:"
	DefaultRingSize    = 64
	DefaultIdleTTL     = time.Hour
	DefaultDialTimeout = 2 * time.Second
)

// maxRingSize keeps a ring in Redis's compact listpack encoding
// (zset-max-listpack-entries is 128 by default); above it every identity
// costs several times the memory.
const maxRingSize = 128

// Errors Open returns, for errors.Is. Each message names the setting to fix.
var (
	// ErrUnreachable means no Redis answered at --redis-addr: the caller
	// starts on local state and calls Open again later.
	ErrUnreachable = errors.New("redis unreachable")
	// ErrAuth means Redis refused the credentials.
	ErrAuth = errors.New("redis refused the credentials")
	// ErrNotRedis means something other than Redis answered.
	ErrNotRedis = errors.New("not a redis server")
	// ErrTLS means the TLS handshake failed: a certificate not signed by
	// --redis-ca-file, or a server that does not speak TLS.
	ErrTLS = errors.New("redis TLS handshake failed")
	// ErrFormat means the store holds keys of another format version.
	ErrFormat = errors.New("redis holds an unknown key format")
)

// Options configure a Store. The zero value is not usable: Addrs is required.
type Options struct {
	// Addrs are HOST:PORT of one Redis (or Valkey) node, or seed nodes of
	// a Redis Cluster; a cluster is detected by itself (--redis-addr).
	Addrs []string
	// Username is the ACL user; empty means the default user
	// (--redis-username).
	Username string
	// Password authenticates; empty sends none (--redis-password-file).
	// It is never logged and never part of an error; String and LogValue
	// redact it.
	Password string
	// TLS dials with TLS, verifying the server against CAFile, or against
	// the system roots when CAFile is empty (--redis-tls).
	TLS bool
	// CAFile is a PEM bundle of the CAs to trust with TLS (--redis-ca-file).
	CAFile string
	// KeyPrefix starts every key and the events channel; default
	// "flowlock:". It must not contain '{' or '}', which would change how a
	// cluster shards the keys (--redis-key-prefix).
	KeyPrefix string
	// RingSize is how many recent request times Redis keeps per identity;
	// default 64, at most 128.
	RingSize int
	// IdleTTL is how long an identity's times stay in Redis after its last
	// request; default 1 h.
	IdleTTL time.Duration
	// DialTimeout bounds connecting (and so Open); default 2 s.
	DialTimeout time.Duration
	// ClientName is sent as CLIENT SETNAME, so an operator can tell the
	// replicas apart in CLIENT LIST; empty sends none.
	ClientName string
}

// String describes o without the password.
func (o Options) String() string {
	pw := ""
	if o.Password != "" {
		pw = "[redacted]"
	}
	return fmt.Sprintf("redis addrs=%s username=%q password=%s tls=%t ca_file=%q key_prefix=%q",
		strings.Join(o.Addrs, ","), o.Username, pw, o.TLS, o.CAFile, o.KeyPrefix)
}

// withDefaults fills the zero fields and checks the rest.
func (o Options) withDefaults() (Options, error) {
	if len(o.Addrs) == 0 {
		return o, errors.New("--redis-addr: no address")
	}
	for _, a := range o.Addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return o, fmt.Errorf("--redis-addr %q: want HOST:PORT", a)
		}
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	if strings.ContainsAny(o.KeyPrefix, "{}") {
		return o, fmt.Errorf("--redis-key-prefix %q: must not contain '{' or '}'", o.KeyPrefix)
	}
	if o.RingSize == 0 {
		o.RingSize = DefaultRingSize
	}
	if o.RingSize < 2 || o.RingSize > maxRingSize {
		return o, fmt.Errorf("redis ring size %d: want 2 to %d", o.RingSize, maxRingSize)
	}
	if o.IdleTTL == 0 {
		o.IdleTTL = DefaultIdleTTL
	}
	if o.IdleTTL < time.Second {
		return o, fmt.Errorf("redis idle TTL %v: want at least 1s", o.IdleTTL)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.CAFile != "" && !o.TLS {
		return o, errors.New("--redis-ca-file is set but --redis-tls is not")
	}
	return o, nil
}

// Store is a connection to the shared state. It is safe for concurrent use.
type Store struct {
	c    rueidis.Client
	opts Options
	keys keys
}

// Open connects to Redis, detects a cluster, and checks (or writes) the
// format version. It fails with ErrUnreachable when nothing answers, so
// the caller can start on local state and retry; with ErrAuth, ErrTLS,
// ErrNotRedis or ErrFormat when retrying will not help. Connecting is
// bounded by Options.DialTimeout.
func Open(ctx context.Context, o Options) (*Store, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	co := rueidis.ClientOption{
		InitAddress:  o.Addrs,
		Username:     o.Username,
		Password:     o.Password,
		ClientName:   o.ClientName,
		DisableCache: true, // the quarantine mirror is kept by pub/sub
		Dialer:       net.Dialer{Timeout: o.DialTimeout},
		// A write to a dead peer must not hold a pipeline for the
		// default minutes: the caller's deadlines are milliseconds.
		ConnWriteTimeout: o.DialTimeout,
		// Always through the pipeline, where an expired deadline just
		// returns. Otherwise a lone call with a deadline is written and
		// read synchronously, and its deadline closes the connection: a
		// redial per slow call, and a wait of up to a second for a hung
		// peer (see within).
		AlwaysPipelining: true,
	}
	if o.TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.CAFile != "" {
			pem, err := os.ReadFile(o.CAFile)
			if err != nil {
				return nil, fmt.Errorf("--redis-ca-file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--redis-ca-file %q: no PEM certificate in it", o.CAFile)
			}
		}
		co.TLSConfig = tc
	}
	c, err := rueidis.NewClient(co)
	if err != nil {
		return nil, classify(o, err)
	}
	s := &Store{c: c, opts: o, keys: newKeys(o.KeyPrefix)}
	if err := s.checkFormat(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// classify turns a connect error into one of Open's errors, naming the
// setting to fix. The password never appears: Redis does not echo it.
func classify(o Options, err error) error {
	addrs := strings.Join(o.Addrs, ",")
	msg := err.Error()
	switch {
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "NOAUTH"), strings.Contains(msg, "NOPERM"):
		return fmt.Errorf("%w at --redis-addr %s: check --redis-username and --redis-password-file: %s", ErrAuth, addrs, firstLine(msg))
	case o.TLS && isTLSError(err):
		return fmt.Errorf("%w with --redis-addr %s: check --redis-ca-file and that the server speaks TLS: %s", ErrTLS, addrs, firstLine(msg))
	}
	// A TLS server resets a plain client, and a plain server never
	// answers a TLS one: either looks like a network failure.
	hint := " (if it expects TLS, set --redis-tls)"
	if o.TLS {
		hint = " (if it does not speak TLS, unset --redis-tls)"
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		hint = ""
	}
	if isNetError(err) {
		return fmt.Errorf("%w: --redis-addr %s%s: %w", ErrUnreachable, addrs, hint, err)
	}
	return fmt.Errorf("%w: --redis-addr %s does not speak the Redis protocol%s: %s", ErrNotRedis, addrs, hint, firstLine(msg))
}

// isNetError reports whether err is a failure to reach or hear from the
// peer (refused, timed out, reset), as opposed to an answer that is wrong.
func isNetError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, rueidis.ErrNoAddr) || errors.Is(err, rueidis.ErrNoSlot) || errors.Is(err, os.ErrDeadlineExceeded)
}

// isTLSError reports whether err comes from the TLS handshake.
func isTLSError(err error) bool {
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var ae tls.AlertError
	return errors.As(err, &cv) || errors.As(err, &rh) || errors.As(err, &ua) || errors.As(err, &hn) ||
		errors.As(err, &ci) || errors.As(err, &ae) || strings.Contains(err.Error(), "tls: ")
}

// firstLine returns s up to its first newline, at most 200 bytes, so a
// foreign server's banner cannot flood an error.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// checkFormat writes the format version if no replica has, and refuses
// any other version.
func (s *Store) checkFormat(ctx context.Context) error {
	want := strconv.Itoa(FormatVersion)
	k := s.keys.format
	res := s.c.DoMulti(ctx,
		s.c.B().Set().Key(k).Value(want).Nx().Build(),
		s.c.B().Get().Key(k).Build())
	if err := res[0].Error(); err != nil && !rueidis.IsRedisNil(err) {
		return classify(s.opts, err)
	}
	got, err := res[1].ToString()
	if err != nil {
		return classify(s.opts, err)
	}
	if got != want {
		return fmt.Errorf("%w: key %q is %q, this build reads %q: another Flow Lock version owns --redis-key-prefix %q; use another prefix or upgrade",
			ErrFormat, k, firstLine(got), want, s.opts.KeyPrefix)
	}
	return nil
}

// Epoch returns the shared state's epoch, a random value the first replica
// writes (SET NX) and every later one reads. A Redis that lost its data
// (restarted without persistence, flushed, evicted) answers a new epoch:
// the replicas must then write back all they hold, not take the empty list
// as the truth.
func (s *Store) Epoch(ctx context.Context) (string, error) {
	return within(ctx, func() (string, error) {
		fresh := rand.Text()
		old, err := s.c.Do(ctx, s.c.B().Set().Key(s.keys.epoch).Value(fresh).Nx().Get().Build()).ToString()
		if rueidis.IsRedisNil(err) {
			return fresh, nil // this call wrote it
		}
		if err != nil {
			return "", fmt.Errorf("epoch: %w", err)
		}
		return old, nil
	})
}

// Cluster reports whether the store is a Redis Cluster.
func (s *Store) Cluster() bool { return s.c.Mode() == rueidis.ClientModeCluster }

// Ping checks that Redis answers, for readiness and the breaker's probe.
func (s *Store) Ping(ctx context.Context) error {
	_, err := within(ctx, func() (struct{}, error) { return struct{}{}, s.c.Do(ctx, s.c.B().Ping().Build()).Error() })
	return err
}

// within runs f and returns its result, or ctx's error as soon as ctx is
// done, whichever comes first. rueidis mostly honours a deadline, but not
// always: a connection it gives up on while Redis hangs (SIGSTOP, a full
// network queue) is closed by waiting up to a second for the silent peer,
// on the caller's goroutine. Here f finishes on its own goroutine instead,
// and the caller returns at its deadline. The goroutine ends with that
// second; the caller's breaker keeps there from being many.
func within[T any](ctx context.Context, f func() (T, error)) (T, error) {
	if ctx.Done() == nil {
		return f()
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// Close closes the connections; calls in flight fail.
func (s *Store) Close() { s.c.Close() }

// keys names everything the store writes. Per-identity keys carry a hash
// tag over a hash of the identity, so a cluster shards them by identity
// whatever bytes the identity holds (an API key may contain '{').
type keys struct {
	prefix string
	format string
	epoch  string
	// timing is the prefix of an identity's ring: prefix + "t:{" + hash + "}".
	timing string
	// quarantine entries and their index share one slot, so one script
	// updates both atomically.
	qEntry string // + hash
	qIndex string
	events string
}

func newKeys(prefix string) keys {
	return keys{
		prefix: prefix,
		format: prefix + "format",
		epoch:  prefix + "epoch",
		timing: prefix + "t:{",
		qEntry: prefix + "q:{q}:",
		qIndex: prefix + "q:{q}",
		events: prefix + "events",
	}
}

// idHash returns 16 hex digits of SHA-256(id): fixed, so every replica
// derives the same key, and long enough that two identities never share one.
func idHash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:8])
}

// timingKey returns the key of id's ring, in one allocation.
func (k keys) timingKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	var hx [16]byte
	hex.Encode(hx[:], sum[:8])
	var b strings.Builder
	b.Grow(len(k.timing) + len(hx) + 1)
	b.WriteString(k.timing)
	b.Write(hx[:])
	b.WriteByte('}')
	return b.String()
}
