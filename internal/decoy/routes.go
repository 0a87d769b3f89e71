package decoy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/flowlock/flowlock/internal/untrusted"
)

// Bounds of --routes: what an operator's list may hold. A request is
// matched against every pattern, so they also bound the work per request.
const (
	MaxRoutes       = 256
	MaxRouteLen     = 256
	maxRouteSegment = 32
)

// Routes are the paths the real API serves, as path patterns: the bait
// makes up documents on them only, and answers everywhere else what the
// real API answers for a path it does not have (NotFound). A pattern is a
// path whose segments are literal, or * for any one non-empty segment;
// one that ends in / is a subtree, as in Go's http.ServeMux:
//
//	/data            /data only (not /data/, not /data/1)
//	/api/items/*     /api/items/1, /api/items/abc (not /api/items, not /api/items/1/x)
//	/api/users/*/orders
//	/api/items/      /api/items/ and every path under it (/api/items/1/x);
//	                 /api/items is redirected there (307), as the mux does
//	/                every path
//
// The query string plays no part, as in Go's http.ServeMux.
type Routes struct {
	// patterns are each split at '/', without the leading empty
	// segment; a subtree's last segment is "".
	patterns [][]string
	subtree  bool // some pattern is a subtree: a path may be redirected
}

// ParseRoutes parses a comma-separated list of patterns (see Routes).
// Spaces around a pattern are dropped; an empty list is an error.
func ParseRoutes(list string) (*Routes, error) {
	r := &Routes{}
	seen := map[string]bool{}
	n := 0
	for p := range strings.SplitSeq(list, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if n++; n > MaxRoutes {
			return nil, fmt.Errorf("more than %d patterns", MaxRoutes)
		}
		segs, err := parsePattern(p)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", untrusted.Clip(p, errorQuote), err)
		}
		if !seen[p] {
			seen[p] = true
			r.patterns = append(r.patterns, segs)
			r.subtree = r.subtree || isSubtree(segs)
		}
	}
	if len(r.patterns) == 0 {
		return nil, errors.New("no pattern; give paths such as /api/items,/api/items/*")
	}
	return r, nil
}

func parsePattern(p string) ([]string, error) {
	switch {
	case len(p) > MaxRouteLen:
		return nil, fmt.Errorf("longer than %d bytes", MaxRouteLen)
	case p[0] != '/':
		return nil, errors.New("must start with /")
	case strings.ContainsAny(p, "?#"):
		return nil, errors.New("a path only: the query string plays no part")
	}
	for _, c := range p {
		if c <= ' ' || c == 0x7f {
			return nil, errors.New("must not hold spaces or control characters")
		}
	}
	segs := strings.Split(p[1:], "/")
	if len(segs) > maxRouteSegment {
		return nil, fmt.Errorf("more than %d segments", maxRouteSegment)
	}
	for i, s := range segs {
		switch {
		case s == "" && i < len(segs)-1:
			return nil, errors.New("empty segment (//): the server redirects such a path before it is matched")
		case s == "." || s == "..":
			return nil, errors.New(". and .. segments: the server redirects such a path before it is matched")
		case s != "*" && strings.Contains(s, "*"):
			return nil, errors.New("* must be a whole segment")
		case strings.ContainsAny(s, "{}"):
			return nil, errors.New("use * for a variable segment, not {name}")
		}
	}
	return segs, nil
}

// errorQuote is how much of a bad pattern or line an error quotes, so
// that it stays readable whatever the input's length.
const errorQuote = 64

// Match reports whether path (a request's URL.Path) is one of the API's
// routes. A nil Routes matches every path: the decoy then has no notion
// of the API's routes (see BaitOptions.Routes).
func (r *Routes) Match(path string) bool {
	if r == nil {
		return true
	}
	if path == "" || path[0] != '/' {
		return false
	}
	p := splitPath(path[1:])
	for _, segs := range r.patterns {
		if p.match(segs) {
			return true
		}
	}
	return false
}

// Redirect reports whether a request for path, which Match refused, is
// redirected to path + "/", as Go's http.ServeMux redirects /tree when
// only the subtree /tree/ is registered.
func (r *Routes) Redirect(path string) bool {
	if r == nil || !r.subtree || path == "" || path[0] != '/' || path[len(path)-1] == '/' {
		return false
	}
	p := splitPath(path[1:] + "/")
	for _, segs := range r.patterns {
		// The subtree's own root, not a path under it: the mux redirects
		// to a path that the subtree pattern matches exactly.
		if isSubtree(segs) && len(segs)-1 == p.slashes && p.match(segs) {
			return true
		}
	}
	return false
}

// isSubtree reports whether a parsed pattern ends in "/".
func isSubtree(segs []string) bool { return segs[len(segs)-1] == "" }

// pathSegments is a request path (without its leading slash) cut at its
// first slashes, once for all patterns: a path may be as long as the
// server's header limit (64 KiB), and looking for the end of a long
// segment again for each of 256 patterns would cost 256 scans of it.
type pathSegments struct {
	path string
	// slash holds the index of the path's first slashes; slashes counts
	// them, up to one more than a pattern has segments: enough to tell
	// whether a path has more segments than any pattern.
	slash   [maxRouteSegment + 1]int
	slashes int
}

func splitPath(path string) pathSegments {
	p := pathSegments{path: path}
	from := 0
	for p.slashes < len(p.slash) {
		i := strings.IndexByte(path[from:], '/')
		if i < 0 {
			break
		}
		p.slash[p.slashes] = from + i
		p.slashes++
		from += i + 1
	}
	return p
}

// match matches the path against one pattern, segment by segment, without
// allocating. A subtree pattern matches any rest after its last "/".
func (p *pathSegments) match(segs []string) bool {
	subtree := isSubtree(segs)
	if subtree {
		segs = segs[:len(segs)-1]
		if p.slashes < len(segs) { // the path ends before the subtree's "/"
			return false
		}
	} else if p.slashes != len(segs)-1 { // fewer or more segments than the pattern
		return false
	}
	start := 0
	for i, s := range segs {
		end := len(p.path) // the last segment, in a pattern that is no subtree
		if i < p.slashes {
			end = p.slash[i]
		}
		seg := p.path[start:end]
		if s == "*" {
			if seg == "" {
				return false
			}
		} else if seg != s {
			return false
		}
		start = end + 1
	}
	return true
}
