package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// grpcSender plays Envoy: it asks an ext_authz server about each request,
// with the client's address as the source and the request time set.
type grpcSender struct {
	conn    *grpc.ClientConn
	client  authv3.AuthorizationClient
	virtual bool
}

// newGRPCSender connects (lazily) to the ext_authz server at o.target, in
// plaintext, as Envoy does inside a mesh without TLS to the authz cluster.
func newGRPCSender(o liveOptions) (*grpcSender, error) {
	conn, err := grpc.NewClient(o.target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("--target %q: %w", o.target, err)
	}
	return &grpcSender{conn: conn, client: authv3.NewAuthorizationClient(conn), virtual: o.virtualTime}, nil
}

// Close closes the connection.
func (g *grpcSender) Close() error { return g.conn.Close() }

// checkRequest builds the CheckRequest an edge Envoy would send for r: the
// client as the source address (and in X-Forwarded-For, which Envoy appends
// with use_remote_address), the request line and user agent, and the
// request time.
func (g *grpcSender) checkRequest(r *liveRequest) *authv3.CheckRequest {
	ts := r.sent
	if g.virtual {
		ts = r.virtual
	}
	port := 40000 + uint32(r.addr.As16()[15])
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{
				Address:       r.addr.String(),
				PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
			},
		}}},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(ts),
			Http: &authv3.AttributeContext_HttpRequest{
				Method:   r.method,
				Path:     r.path,
				Host:     "api.example.com",
				Scheme:   "http",
				Protocol: "HTTP/1.1",
				Headers: map[string]string{
					":method":         r.method,
					":path":           r.path,
					":authority":      "api.example.com",
					"user-agent":      r.userAgent,
					"x-forwarded-for": r.addr.String(),
				},
			},
		},
	}}
}

func (g *grpcSender) send(ctx context.Context, r *liveRequest) outcome {
	resp, err := g.client.Check(ctx, g.checkRequest(r))
	if err != nil {
		return outcome{kind: outFailed, score: -1, err: err}
	}
	return checkOutcome(resp)
}

// checkOutcome reads a CheckResponse: OK allows (with x-flowlock-risk when
// the server sets it); a denied response with 403 or 429 is a deny or a
// volume limit, with Retry-After and the reason from the dynamic metadata.
func checkOutcome(resp *authv3.CheckResponse) outcome {
	out := outcome{score: -1}
	if resp.GetStatus().GetCode() == int32(codes.OK) {
		out.kind = outAllowed
		for _, h := range resp.GetOkResponse().GetHeaders() {
			if strings.EqualFold(h.GetHeader().GetKey(), "x-flowlock-risk") {
				if s, err := strconv.Atoi(h.GetHeader().GetValue()); err == nil {
					out.score = s
				}
			}
		}
		return out
	}
	denied := resp.GetDeniedResponse()
	out.kind, out.status = outDenied, int(denied.GetStatus().GetCode())
	if out.status == 429 {
		out.kind = outLimited
	}
	for _, h := range denied.GetHeaders() {
		if strings.EqualFold(h.GetHeader().GetKey(), "retry-after") {
			out.retryAfter = h.GetHeader().GetValue()
		}
	}
	meta := resp.GetDynamicMetadata().GetFields()
	if v, ok := meta["flowlock_reason"]; ok {
		out.reason = v.GetStringValue()
	}
	if v, ok := meta["flowlock_score"]; ok {
		out.score = int(v.GetNumberValue())
	}
	return out
}
