package chaos

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// checkRequest returns a marshalled CheckRequest from 203.0.113.7 whose
// x-pad header makes it size bytes long (give or take a few).
func checkRequest(t *testing.T, size int) []byte {
	t.Helper()
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "203.0.113.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/data", Host: "api.example",
			Headers: map[string]string{"x-pad": strings.Repeat("a", max(0, size-100))},
		}},
	}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawCodec sends bytes that are already a marshalled message, so a flood
// of big Checks costs the test one buffer, not one per call.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

func (rawCodec) Name() string { return "proto" }

var _ encoding.CodecV2 = rawCodec{}

// check sends one marshalled CheckRequest.
func check(ctx context.Context, conn *grpc.ClientConn, req []byte) error {
	var resp authv3.CheckResponse
	return conn.Invoke(ctx, "/envoy.service.auth.v3.Authorization/Check", req, &resp, grpc.ForceCodecV2(rawCodec{}))
}

// procStatus returns a field of /proc/PID/status in bytes (VmRSS, VmHWM).
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestHugeCheckFlood sends 100 concurrent Checks of almost 4 MB, three
// rounds, and bounds the service's peak resident memory. Before the
// limits, gRPC buffered every one of them: RSS went from 22 MB to 871 MB.
func TestHugeCheckFlood(t *testing.T) {
	const (
		concurrent = 100
		rounds     = 3
		size       = 4<<20 - 1<<10 // under the old 4 MiB limit, so it measures buffering, not the limit
		ceiling    = 160 << 20     // peak RSS allowed
	)
	s := start(t)
	pid := s.Cmd.Process.Pid
	before := procStatus(t, pid, "VmRSS")
	conn := s.Dial(t)
	req := checkRequest(t, size)

	var refused, other int
	var mu sync.Mutex
	for range rounds {
		var wg sync.WaitGroup
		for range concurrent {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				err := check(ctx, conn, req)
				mu.Lock()
				defer mu.Unlock()
				if status.Code(err) == codes.ResourceExhausted {
					refused++
				} else {
					other++
				}
			})
		}
		wg.Wait()
	}
	peak := procStatus(t, pid, "VmHWM")
	after := procStatus(t, pid, "VmRSS")
	t.Logf("RSS before %d MB, peak %d MB, after %d MB; %d of %d Checks refused RESOURCE_EXHAUSTED",
		before>>20, peak>>20, after>>20, refused, refused+other)
	if peak > ceiling {
		t.Errorf("peak RSS %d MB under a flood of %d concurrent %d KiB Checks, want at most %d MB",
			peak>>20, concurrent, size>>10, ceiling>>20)
	}
	if refused != concurrent*rounds {
		t.Errorf("%d of %d oversized Checks refused with RESOURCE_EXHAUSTED, want all", refused, concurrent*rounds)
	}
	// The service still answers an ordinary Check.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := check(ctx, conn, checkRequest(t, 1000)); err != nil {
		t.Errorf("an ordinary Check after the flood: %v", err)
	}
}

// TestGRPCMaxRecvBytes shows the receive limit: 256 KiB by default, as
// configured otherwise.
func TestGRPCMaxRecvBytes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	def := start(t)
	conn := def.Dial(t)
	if err := check(ctx, conn, checkRequest(t, 200<<10)); err != nil {
		t.Errorf("a 200 KiB Check under the default limit: %v", err)
	}
	if err := check(ctx, conn, checkRequest(t, 300<<10)); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a 300 KiB Check under the default 256 KiB limit: %v, want RESOURCE_EXHAUSTED", err)
	}
	raised := start(t, "--grpc-max-recv-bytes", "1048576")
	if err := check(ctx, raised.Dial(t), checkRequest(t, 300<<10)); err != nil {
		t.Errorf("a 300 KiB Check with --grpc-max-recv-bytes 1048576: %v", err)
	}
}

// http2 frame types and settings used below (RFC 9113 §6).
const (
	frameSettings = 0x4
	framePing     = 0x6
	frameGoAway   = 0x7

	settingMaxConcurrentStreams = 0x3
	settingMaxHeaderListSize    = 0x6
)

// h2conn is a bare HTTP/2 client connection that answers nothing the
// server sends unless told to: a client that connects and then goes quiet.
type h2conn struct {
	net.Conn
	r *bufio.Reader
}

// dialH2 connects to addr and sends the client preface and an empty
// SETTINGS frame.
func dialH2(t *testing.T, addr string) *h2conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"+"\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
		t.Fatal(err)
	}
	return &h2conn{Conn: c, r: bufio.NewReader(c)}
}

// frame reads the next frame header and payload.
func (c *h2conn) frame() (typ, flags byte, payload []byte, err error) {
	var h [9]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return 0, 0, nil, err
	}
	n := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	payload = make([]byte, n)
	_, err = io.ReadFull(c.r, payload)
	return h[3], h[4], payload, err
}

// TestGRPCAdvertisesLimits reads the server's SETTINGS frame: the stream
// cap and the header list cap are what Envoy needs, not grpc-go's
// unlimited defaults.
func TestGRPCAdvertisesLimits(t *testing.T) {
	s := start(t, "--grpc-max-streams", "64")
	c := dialH2(t, s.GRPCAddr)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, flags, payload, err := c.frame()
	if err != nil {
		t.Fatal(err)
	}
	if typ != frameSettings || flags&1 != 0 {
		t.Fatalf("first frame type %d flags %d, want the server's SETTINGS", typ, flags)
	}
	got := map[uint16]uint32{}
	for i := 0; i+6 <= len(payload); i += 6 {
		got[binary.BigEndian.Uint16(payload[i:])] = binary.BigEndian.Uint32(payload[i+2:])
	}
	if v, ok := got[settingMaxConcurrentStreams]; !ok || v != 64 {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d (sent %v), want 64", v, ok)
	}
	if v, ok := got[settingMaxHeaderListSize]; !ok || v != 64<<10 {
		t.Errorf("SETTINGS_MAX_HEADER_LIST_SIZE = %d (sent %v), want %d", v, ok, 64<<10)
	}
}

// closedWithin waits up to d for the server to close c, reading (and
// dropping) whatever it sends, and reports whether it did and which frame
// types it saw on the way, if c speaks HTTP/2.
func closedWithin(c net.Conn, d time.Duration) (closed bool, elapsed time.Duration) {
	t0 := time.Now()
	_ = c.SetReadDeadline(t0.Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, time.Since(t0)
	}
	return true, time.Since(t0)
}

// TestGRPCHandshakeTimeout: a connection that never sends the HTTP/2
// preface is closed after --grpc-handshake-timeout, not grpc-go's 120 s.
func TestGRPCHandshakeTimeout(t *testing.T) {
	s := start(t, "--grpc-handshake-timeout", "1s")
	c, err := net.DialTimeout("tcp", s.GRPCAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	closed, after := closedWithin(c, 5*time.Second)
	if !closed {
		t.Fatalf("a silent connection is still open after %v with --grpc-handshake-timeout 1s", after.Round(time.Millisecond))
	}
	t.Logf("silent connection closed after %v", after.Round(time.Millisecond))
}

// TestGRPCIdleTimeout: a connection with no call is sent GOAWAY and closed
// after --grpc-idle-timeout.
func TestGRPCIdleTimeout(t *testing.T) {
	s := start(t, "--grpc-idle-timeout", "1s")
	c := dialH2(t, s.GRPCAddr)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	t0 := time.Now()
	for {
		typ, flags, _, err := c.frame()
		if err != nil {
			t.Fatalf("no GOAWAY within 5s of idleness with --grpc-idle-timeout 1s: %v", err)
		}
		if typ == frameSettings && flags&1 == 0 {
			// Acknowledge the server's SETTINGS, as a live client does.
			if _, err := c.Write([]byte{0, 0, 0, frameSettings, 1, 0, 0, 0, 0}); err != nil {
				t.Fatal(err)
			}
		}
		if typ == frameGoAway {
			t.Logf("GOAWAY after %v idle", time.Since(t0).Round(time.Millisecond))
			return
		}
	}
}

// TestGRPCKeepaliveClosesDeadPeers: a peer that does not answer the
// server's pings is closed after two --grpc-keepalive-time intervals.
func TestGRPCKeepaliveClosesDeadPeers(t *testing.T) {
	s := start(t, "--grpc-keepalive-time", "1s", "--grpc-idle-timeout", "0")
	c := dialH2(t, s.GRPCAddr)
	_ = c.SetReadDeadline(time.Now().Add(8 * time.Second))
	pinged := false
	t0 := time.Now()
	for {
		typ, flags, _, err := c.frame()
		if err != nil {
			if !pinged {
				t.Fatalf("closed or timed out (%v) without a keepalive PING", err)
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("a peer that never answers PING is still connected after %v", time.Since(t0).Round(time.Millisecond))
			}
			t.Logf("unanswered keepalive: closed after %v", time.Since(t0).Round(time.Millisecond))
			return
		}
		if typ == frameSettings && flags&1 == 0 {
			if _, err := c.Write([]byte{0, 0, 0, frameSettings, 1, 0, 0, 0, 0}); err != nil {
				t.Fatal(err)
			}
		}
		if typ == framePing && flags&1 == 0 {
			pinged = true // and never answered
		}
	}
}

// grpcHealthy asks the gRPC health service over a new connection, within
// timeout.
func grpcHealthy(addr string, timeout time.Duration, opts ...grpc.DialOption) error {
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("status %s", resp.GetStatus())
	}
	return nil
}

// healthz gets /healthz within timeout.
func healthz(addr string, timeout time.Duration) error {
	c := http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// flood opens n silent TCP connections to addr and keeps them until t
// ends. It returns how many the kernel completed.
func flood(t *testing.T, addr string, n int) int {
	t.Helper()
	opened := 0
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			continue // the backlog is full: that is the attack working
		}
		conns = append(conns, c)
		opened++
	}
	return opened
}

// TestConnectionFlood opens more silent connections to the gRPC port than
// the service has descriptors, then asks gRPC health, /healthz and a Check
// over new connections. Before the caps, accept failed with "too many open
// files" and all three timed out.
func TestConnectionFlood(t *testing.T) {
	const attackers = 5000 // more than bounded.OpenFiles (4096), and than the cap (1024)
	s := start(t)
	opened := flood(t, s.GRPCAddr, attackers)
	t.Logf("%d of %d silent connections to the gRPC port opened", opened, attackers)

	if err := grpcHealthy(s.GRPCAddr, 5*time.Second); err != nil {
		t.Errorf("gRPC health during the gRPC connection flood: %v", err)
	}
	if err := healthz(s.HTTPAddr, 5*time.Second); err != nil {
		t.Errorf("/healthz during the gRPC connection flood: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := check(ctx, conn, checkRequest(t, 1000)); err != nil {
		t.Errorf("a Check during the gRPC connection flood: %v", err)
	}

	// The HTTP listener has its own budget: flooding it too leaves
	// /healthz answering.
	opened = flood(t, s.HTTPAddr, 1000)
	t.Logf("%d of 1000 silent connections to the HTTP port opened", opened)
	if err := healthz(s.HTTPAddr, 5*time.Second); err != nil {
		t.Errorf("/healthz during the HTTP connection flood: %v", err)
	}
	if err := grpcHealthy(s.GRPCAddr, 5*time.Second); err != nil {
		t.Errorf("gRPC health during both floods: %v", err)
	}
	pid := s.Cmd.Process.Pid
	t.Logf("service during both floods: RSS %d MB, peak %d MB, address space %d MB",
		procStatus(t, pid, "VmRSS")>>20, procStatus(t, pid, "VmHWM")>>20, procStatus(t, pid, "VmSize")>>20)
}

// keepAliveIdle opens a connection to the HTTP listener at addr, gets
// /healthz on it with keep-alive, and leaves it open and quiet: a client
// past its handshake that sends nothing more.
func keepAliveIdle(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("keep-alive GET /healthz: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("keep-alive GET /healthz: status %d, close %v; want 200 on a kept connection", resp.StatusCode, resp.Close)
	}
	_ = c.SetDeadline(time.Time{})
	return c
}

// TestEstablishedIdleConnectionFlood fills both connection caps with
// connections that complete their handshake and then sit idle (HTTP
// keep-alive after one GET; the HTTP/2 preface and SETTINGS), the kind the
// cap cannot tell from real clients by their first bytes. Before the fix
// the cap kept them for the servers' idle timeouts (2 min HTTP, 5 min
// gRPC) and refused /healthz, /readyz and gRPC health; now a newcomer
// closes the connection idle longest once it has been idle a second.
func TestEstablishedIdleConnectionFlood(t *testing.T) {
	const maxConns = 8
	s := start(t, "--http-max-conns", strconv.Itoa(maxConns), "--grpc-max-conns", strconv.Itoa(maxConns),
		"--grpc-handshake-timeout", "1s")
	var idle []net.Conn
	for range maxConns {
		idle = append(idle, keepAliveIdle(t, s.HTTPAddr))
		idle = append(idle, dialH2(t, s.GRPCAddr))
	}
	// Past the handshake timeout, so the gRPC ones are established for
	// good, and past the idle threshold of the cap.
	time.Sleep(1500 * time.Millisecond)

	for _, path := range []string{"/healthz", "/readyz"} {
		c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + s.HTTPAddr + path)
		if err != nil {
			t.Errorf("%s with the HTTP cap full of idle keep-alive connections: %v", path, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s with the HTTP cap full of idle keep-alive connections: status %d", path, resp.StatusCode)
		}
	}
	if err := grpcHealthy(s.GRPCAddr, 5*time.Second); err != nil {
		t.Errorf("gRPC health with the gRPC cap full of idle HTTP/2 connections: %v", err)
	}
	// Each probe made room by closing one idle connection (/readyz may
	// have found the slot /healthz left), and only that many were closed.
	closed := map[bool]int{} // by "is HTTP/2"
	for _, c := range idle {
		if ok, _ := closedWithin(c, 50*time.Millisecond); ok {
			_, h2 := c.(*h2conn)
			closed[h2]++
		}
	}
	if closed[false] < 1 || closed[false] > 2 || closed[true] != 1 {
		t.Errorf("closed %d idle HTTP/1 and %d idle HTTP/2 connections, want 1-2 and 1: one for each probe", closed[false], closed[true])
	}
}

// TestGRPCAllowPeers: with --grpc-allow-peers only the listed peers get an
// answer; others are closed at accept.
func TestGRPCAllowPeers(t *testing.T) {
	s := start(t, "--grpc-allow-peers", "127.0.0.2/32")
	from := func(ip string) grpc.DialOption {
		return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
			return d.DialContext(ctx, "tcp", addr)
		})
	}
	insec := grpc.WithTransportCredentials(insecure.NewCredentials())
	if err := grpcHealthy(s.GRPCAddr, 5*time.Second, insec, from("127.0.0.2")); err != nil {
		t.Errorf("an allowed peer: %v", err)
	}
	if err := grpcHealthy(s.GRPCAddr, 2*time.Second, insec, from("127.0.0.3")); err == nil {
		t.Error("a peer outside --grpc-allow-peers was answered")
	}
}

// TestMutualTLS runs the service with --grpc-tls-cert, --grpc-tls-key and
// --grpc-client-ca: only clients with a valid certificate from that CA get
// an answer, and a rotated server certificate is served without a restart.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	serverCA := flowlocktest.NewCA(t, "server CA")
	clientCA := flowlocktest.NewCA(t, "envoy CA")
	first := serverCA.Server(t, "flowlock")
	certFile, keyFile := first.WriteFiles(t, dir, "server")
	caFile := clientCA.WriteFile(t, dir, "envoy-ca")
	s := start(t, "--grpc-tls-cert", certFile, "--grpc-tls-key", keyFile, "--grpc-client-ca", caFile)

	tlsFor := func(c *flowlocktest.Leaf) *tls.Config {
		cfg := &tls.Config{RootCAs: serverCA.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}
		if c != nil {
			cfg.Certificates = []tls.Certificate{c.TLS}
		}
		return cfg
	}
	ask := func(cfg *tls.Config) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return check(ctx, s.DialTLS(t, cfg), checkRequest(t, 1000))
	}
	good := clientCA.Client(t, "envoy", time.Time{}, time.Time{})
	if err := ask(tlsFor(&good)); err != nil {
		t.Fatalf("a client certificate from --grpc-client-ca: %v", err)
	}
	wrongCA := flowlocktest.NewCA(t, "other CA").Client(t, "envoy", time.Time{}, time.Time{})
	expired := clientCA.Client(t, "envoy", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	for name, cfg := range map[string]*tls.Config{
		"no client certificate":      tlsFor(nil),
		"certificate of another CA":  tlsFor(&wrongCA),
		"expired client certificate": tlsFor(&expired),
	} {
		if err := ask(cfg); err == nil {
			t.Errorf("%s: the Check was answered, want the handshake refused", name)
		}
	}
	if err := grpcHealthy(s.GRPCAddr, 2*time.Second); err == nil {
		t.Error("a plaintext client was answered by the TLS listener")
	}

	// Rotate the server certificate in place; new connections get it
	// within the reload poll, without a restart.
	next := serverCA.Server(t, "flowlock")
	next.WriteFiles(t, dir, "server")
	var serial *big.Int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		cfg := tlsFor(&good)
		cfg.NextProtos = []string{"h2"}
		c, err := tls.Dial("tcp", s.GRPCAddr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		serial = c.ConnectionState().PeerCertificates[0].SerialNumber
		c.Close()
		if serial.Cmp(next.Serial) == 0 {
			break
		}
	}
	if serial.Cmp(next.Serial) != 0 {
		t.Fatalf("server certificate serial %v 5s after the rotation, want the new %v", serial, next.Serial)
	}
	if err := ask(tlsFor(&good)); err != nil {
		t.Errorf("a Check after the rotation: %v", err)
	}
}

// TestHTTPAndForwardAuthTLS: the HTTP listener serves /healthz over TLS
// (without client certificates, as the kubelet probes), and forward-auth
// with a client CA refuses a client without a certificate.
func TestHTTPAndForwardAuthTLS(t *testing.T) {
	dir := t.TempDir()
	ca := flowlocktest.NewCA(t, "CA")
	leaf := ca.Server(t, "flowlock")
	certFile, keyFile := leaf.WriteFiles(t, dir, "server")
	caFile := ca.WriteFile(t, dir, "ca")
	s := start(t, "--forward-auth-addr", "127.0.0.1:0",
		"--http-tls-cert", certFile, "--http-tls-key", keyFile,
		"--forward-auth-tls-cert", certFile, "--forward-auth-tls-key", keyFile, "--forward-auth-client-ca", caFile)
	client := func(c *flowlocktest.Leaf) *http.Client {
		cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
		if c != nil {
			cfg.Certificates = []tls.Certificate{c.TLS}
		}
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	get := func(c *http.Client, url string) (int, error) {
		resp, err := c.Get(url)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(client(nil), "https://"+s.HTTPAddr+"/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("https /healthz = %d, %v; want 200", code, err)
	}
	if code, err := get(client(nil), "http://"+s.HTTPAddr+"/healthz"); err == nil && code != http.StatusBadRequest {
		t.Errorf("plaintext /healthz on the TLS listener = %d, want 400 (Go's answer to HTTP on an HTTPS port)", code)
	}
	envoy := ca.Client(t, "proxy", time.Time{}, time.Time{})
	if code, err := get(client(&envoy), "https://"+s.ForwardAuthAddr+"/check"); err != nil || code != http.StatusOK {
		t.Errorf("forward-auth /check with a client certificate = %d, %v; want 200", code, err)
	}
	if _, err := get(client(nil), "https://"+s.ForwardAuthAddr+"/check"); err == nil {
		t.Error("forward-auth /check without a client certificate was answered")
	}
}

// hpackLiteral encodes one header as an HPACK literal without indexing
// and without Huffman coding (RFC 7541 §6.2.2); names and values must be
// shorter than 127 bytes.
func hpackLiteral(name, value string) []byte {
	b := []byte{0, byte(len(name))}
	b = append(b, name...)
	b = append(b, byte(len(value)))
	return append(b, value...)
}

// startStalledCheck opens stream id on c with the headers of a Check and
// sends nothing more: a call whose message never arrives.
func (c *h2conn) startStalledCheck(t *testing.T, id uint32) {
	t.Helper()
	var block []byte
	for _, h := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", "/envoy.service.auth.v3.Authorization/Check"},
		{":authority", "flowlock"}, {"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		block = append(block, hpackLiteral(h[0], h[1])...)
	}
	frame := []byte{byte(len(block) >> 16), byte(len(block) >> 8), byte(len(block)), 0x1, 0x4, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(frame[5:], id)
	if _, err := c.Write(append(frame, block...)); err != nil {
		t.Fatal(err)
	}
}

// TestStalledChecksAreBounded holds calls open without sending their
// message. Past --grpc-max-inflight further calls are refused, so the
// memory that calls can hold (inflight x --grpc-max-recv-bytes) is bounded
// across all connections; and a Check without a deadline is ended after
// --grpc-check-timeout, so the stalled ones free their slots by themselves.
func TestStalledChecksAreBounded(t *testing.T) {
	const (
		inflight     = 8
		checkTimeout = 5 * time.Second // long enough to observe the cap on a loaded machine
	)
	s := start(t, "--grpc-max-inflight", strconv.Itoa(inflight), "--grpc-check-timeout", checkTimeout.String())
	// Two connections, so that the per-connection stream cap is no help.
	for range 2 {
		c := dialH2(t, s.GRPCAddr)
		go func() { _, _ = io.Copy(io.Discard, c) }() // read, never answer
		for j := range inflight / 2 {
			c.startStalledCheck(t, uint32(2*j+1))
		}
	}
	stalledAt := time.Now()
	conn := s.Dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var err error
	for time.Since(stalledAt) < checkTimeout-time.Second { // the stalled calls reach the server in a moment
		if err = check(ctx, conn, checkRequest(t, 1000)); status.Code(err) == codes.ResourceExhausted {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a Check with %d stalled calls in flight: %v, want RESOURCE_EXHAUSTED", inflight, err)
	}
	// Health checks have their own pool: the probes keep passing.
	if err := grpcHealthy(s.GRPCAddr, 2*time.Second); err != nil {
		t.Errorf("gRPC health with the calls full: %v", err)
	}
	// After the check timeout the stalled calls are gone and Checks are
	// answered again.
	time.Sleep(time.Until(stalledAt.Add(checkTimeout + time.Second)))
	if err := check(ctx, conn, checkRequest(t, 1000)); err != nil {
		t.Errorf("a Check after the stalled calls timed out: %v", err)
	}
}

// TestForwardAuthAllowPeers: --forward-auth-allow-peers closes other
// peers at accept, like --grpc-allow-peers.
func TestForwardAuthAllowPeers(t *testing.T) {
	s := start(t, "--forward-auth-addr", "127.0.0.1:0", "--forward-auth-allow-peers", "127.0.0.2")
	from := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
	}
	resp, err := from("127.0.0.2").Get("http://" + s.ForwardAuthAddr + "/check")
	if err != nil {
		t.Fatalf("an allowed peer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("an allowed peer got %d, want 200", resp.StatusCode)
	}
	if resp, err := from("127.0.0.3").Get("http://" + s.ForwardAuthAddr + "/check"); err == nil {
		resp.Body.Close()
		t.Errorf("a peer outside --forward-auth-allow-peers got %d, want the connection closed", resp.StatusCode)
	}
}
