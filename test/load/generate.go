package load

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
)

// callTimeout bounds one Check, so that a stalled server ends a run with
// errors instead of hanging it (Envoy's own ext_authz timeout is shorter).
const callTimeout = 5 * time.Second

// Load is one measured stretch of traffic against one server.
type Load struct {
	// Clients are the addresses requests come from.
	Clients []string
	// Order says how each request picks its client: Random (independent,
	// uniform: per client, gaps are exponential, as from many people), or
	// InOrder (each client once, in turn: to fill a server with clients).
	Order Order
	// XFF also puts the client in X-Forwarded-For, as an edge Envoy does.
	XFF bool
	// Concurrency is the number of Checks in flight (closed loop), or the
	// most that may be in flight (open loop).
	Concurrency int
	// Rate, when positive, makes the loop open: request i is due at
	// start + i/Rate whatever the server does, and its latency counts from
	// when it was due, so a stalled server shows as latency instead of
	// silently lowering the rate (no coordinated omission). 0 is a closed
	// loop: each worker sends its next Check when the last one answers.
	Rate float64
	// StampDue, with Rate, sets each request's time to when it was due
	// instead of when it was sent: a client that keeps a fixed rhythm
	// whatever the queue did. The bot flood uses it.
	StampDue bool
	// Duration ends the stretch; Requests, when positive, ends it after that
	// many sends (whichever comes first).
	Duration time.Duration
	Requests int
}

// Order is how requests pick their client.
type Order int

// The orders.
const (
	// Random picks a client uniformly for each request.
	Random Order = iota
	// InOrder takes the clients one after the other, from the first.
	InOrder
)

// Result is what one stretch measured on the client side.
type Result struct {
	Sent    int // Checks answered or failed
	Allowed int // OK
	Denied  int // denied with HTTP 403
	Other   int // any other answer
	Errors  int // gRPC errors, including timeouts
	Elapsed time.Duration
	// Latencies of the answered Checks, sorted.
	Latencies []time.Duration
	// FirstError is one gRPC error, for the report.
	FirstError error
}

// Throughput is answered Checks per second.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Sent-r.Errors) / r.Elapsed.Seconds()
}

// Quantile returns the q-quantile (0..1) of the latencies, or 0 without any.
func (r *Result) Quantile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(q * float64(len(r.Latencies)))
	return r.Latencies[min(i, len(r.Latencies)-1)]
}

// Client is a load generator connected to one server over a few HTTP/2
// connections, as an Envoy with a few worker threads is.
type Client struct {
	conns []*grpc.ClientConn
}

// Dial connects to addr (host:port on loopback) with n connections.
func Dial(addr string, n int) (*Client, error) {
	c := &Client{}
	for range max(n, 1) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(codec{})))
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		c.conns = append(c.conns, conn)
	}
	return c, nil
}

// codec sends a request's bytes as they are and reads only the answer
// from a response (see request): the generator's share of each Check is
// gRPC's transport and little else.
type codec struct{}

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(encoded)
	if !ok {
		return nil, fmt.Errorf("load codec: cannot send %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	a, ok := v.(*answer)
	if !ok {
		return fmt.Errorf("load codec: cannot read into %T", v)
	}
	var err error
	if len(data) == 1 {
		*a, err = readAnswer(data[0].ReadOnlyData())
	} else {
		*a, err = readAnswer(data.Materialize())
	}
	return err
}

func (codec) Name() string { return "proto" }

// encoded is a message already in wire form.
type encoded []byte

// Close closes the connections.
func (c *Client) Close() {
	for _, conn := range c.conns {
		conn.Close()
	}
}

// Run sends l and returns what it measured. Workers are spread over the
// connections round robin.
func (c *Client) Run(ctx context.Context, l Load) Result {
	if len(l.Clients) == 0 || l.Concurrency <= 0 {
		return Result{}
	}
	var (
		next  atomic.Int64 // index of the next request
		mu    sync.Mutex   // guards total
		total Result
		wg    sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(l.Duration)
	var interval time.Duration
	if l.Rate > 0 {
		interval = time.Duration(float64(time.Second) / l.Rate)
	}
	for w := range l.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := c.conns[w%len(c.conns)]
			req := newRequest(w, l.XFF)
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			var res Result
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if l.Requests > 0 && i >= int64(l.Requests) {
					break
				}
				due := time.Now()
				if l.Rate > 0 {
					due = start.Add(time.Duration(i) * interval)
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					}
				}
				if due.After(end) {
					break
				}
				who := l.Clients[int(i)%len(l.Clients)]
				if l.Order == Random {
					who = l.Clients[rng.IntN(len(l.Clients))]
				}
				stamp := time.Now()
				if l.StampDue {
					stamp = due
				}
				res.check(ctx, conn, req.set(who, stamp), due)
			}
			mu.Lock()
			total.merge(&res)
			mu.Unlock()
		}()
	}
	wg.Wait()
	total.Elapsed = time.Since(start)
	slices.Sort(total.Latencies)
	return total
}

// check sends one Check and records its answer and its latency from due.
// The worker rewrites req for its next Check only after Invoke returns:
// a unary call returns once the answer (or an error) came back, when gRPC
// no longer reads the request (a -race run against a server refusing
// every call at its tap found no access after return).
func (r *Result) check(ctx context.Context, conn *grpc.ClientConn, req []byte, due time.Time) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	var resp answer
	err := conn.Invoke(ctx, authv3.Authorization_Check_FullMethodName, encoded(req), &resp)
	cancel()
	r.Sent++
	if err != nil {
		r.Errors++
		if r.FirstError == nil {
			r.FirstError = err
		}
		return
	}
	r.Latencies = append(r.Latencies, time.Since(due))
	switch {
	case resp.code == int32(codes.OK):
		r.Allowed++
	case resp.denied == 403:
		r.Denied++
	default:
		r.Other++
	}
}

// merge adds o's counts and latencies to r.
func (r *Result) merge(o *Result) {
	r.Sent += o.Sent
	r.Allowed += o.Allowed
	r.Denied += o.Denied
	r.Other += o.Other
	r.Errors += o.Errors
	r.Latencies = append(r.Latencies, o.Latencies...)
	if r.FirstError == nil {
		r.FirstError = o.FirstError
	}
}
