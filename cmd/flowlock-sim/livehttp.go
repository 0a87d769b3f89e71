package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// httpSender sends each request through an HTTP proxy (Envoy, nginx,
// Caddy, Traefik with Flow Lock in front of the API), naming the client in
// X-Forwarded-For, as a load balancer in front of the proxy would.
type httpSender struct {
	base   string // target URL without a trailing slash
	client *http.Client
}

// newHTTPSender checks the target URL and prepares a client with enough
// idle connections for the configured concurrency.
func newHTTPSender(o liveOptions) (*httpSender, error) {
	u, err := url.Parse(o.target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, usagef("--target %q: want an http:// or https:// URL without query, e.g. http://localhost:10000", o.target)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = o.concurrency
	return &httpSender{
		base: strings.TrimRight(o.target, "/"),
		client: &http.Client{
			Transport: tr,
			Timeout:   o.timeout,
			// A redirect is the upstream's answer; report it, do not follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// Close drops idle connections.
func (h *httpSender) Close() error {
	h.client.CloseIdleConnections()
	return nil
}

func (h *httpSender) send(ctx context.Context, r *liveRequest) outcome {
	req, err := http.NewRequestWithContext(ctx, r.method, h.base+r.path, nil)
	if err != nil {
		return outcome{kind: outFailed, score: -1, err: fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("X-Forwarded-For", r.addr.String())
	req.Header.Set("User-Agent", r.userAgent)
	resp, err := h.client.Do(req)
	if err != nil {
		return outcome{kind: outFailed, score: -1, err: err}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	return httpOutcome(resp, body)
}

// httpOutcome classifies a response: 403 with Retry-After is Flow Lock's
// deny, 429 with Retry-After its volume limit, anything else comes from
// the upstream (or the proxy).
func httpOutcome(resp *http.Response, body []byte) outcome {
	out := outcome{kind: outUpstream, status: resp.StatusCode, score: -1}
	retry := resp.Header.Get("Retry-After")
	switch {
	case resp.StatusCode == http.StatusForbidden && retry != "":
		out.kind = outDenied
	case resp.StatusCode == http.StatusTooManyRequests && retry != "":
		out.kind = outLimited
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		out.kind = outAllowed
		return out
	default:
		return out
	}
	out.retryAfter = retry
	var deny struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(body, &deny) == nil {
		out.reason = deny.Reason
	}
	return out
}
