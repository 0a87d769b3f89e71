package traffic

import (
	"math/rand/v2"
	"strconv"
	"sync"
)

// The API that the scenarios talk to. Humans use a handful of routes of an
// ordinary shop-like SPA backend; H6's background timer uses pollPath; bots
// poll one endpoint, walk item ids, or (when they mimic humans) use the human
// model.
const (
	pollPath  = "/api/poll"  // H6's timer route, excluded from timing
	loginPath = "/api/login" // B9's credential-stuffing target
	catalog   = 1000         // item ids a human browses: 1..catalog
	cachedIDs = 8192         // item paths 1..cachedIDs are built once and shared
)

// route is one HTTP method and path.
type route struct {
	method, path string
}

// navRoutes are the first call of a human action: the page or view the user
// opened. An empty path means "an item detail page" (itemPath of the current
// item).
var navRoutes = []route{
	{"GET", "/api/items"},
	{"GET", "/api/items?page=2"},
	{"GET", "/api/items?page=3"},
	{"GET", ""},
	{"GET", ""},
	{"GET", ""},
	{"GET", "/api/search?q=boots"},
	{"GET", "/api/search?q=rain+jacket"},
	{"GET", "/api/search?q=tent"},
	{"GET", "/api/orders"},
	{"GET", "/api/cart"},
	{"POST", "/api/cart"},
}

// fanoutRoutes are the calls an SPA makes after the first one of an action.
// An empty path means itemPath, "r" means reviewsPath of the current item.
var fanoutRoutes = []route{
	{"GET", ""},
	{"GET", ""},
	{"GET", "r"},
	{"GET", "/api/users/me"},
	{"GET", "/api/notifications"},
	{"GET", "/api/recommendations"},
	{"GET", "/api/cart"},
	{"GET", "/api/config"},
}

// botEndpoints are what a scripted client polls: one per stream for timer
// bots, a random one per request for the Poisson bot.
var botEndpoints = []string{
	"/api/prices",
	"/api/inventory",
	"/api/items?page=1",
	"/api/quotes",
	"/api/status",
	"/api/feed",
}

// idPaths holds "/api/items/{id}" for ids 1..cachedIDs and
// "/api/items/{id}/reviews" for ids 1..catalog, index = id, built once so the
// generators do not allocate a string per request.
var idPaths = sync.OnceValue(func() (t struct{ items, reviews []string }) {
	t.items = make([]string, cachedIDs+1)
	for i := 1; i <= cachedIDs; i++ {
		t.items[i] = "/api/items/" + strconv.Itoa(i)
	}
	t.reviews = make([]string, catalog+1)
	for i := 1; i <= catalog; i++ {
		t.reviews[i] = t.items[i] + "/reviews"
	}
	return t
})

// itemPath returns "/api/items/{id}"; it allocates only for ids beyond
// cachedIDs (scrapers running for longer than their scenario's horizon).
func itemPath(id int) string {
	if id >= 1 && id <= cachedIDs {
		return idPaths().items[id]
	}
	return "/api/items/" + strconv.Itoa(id)
}

// reviewsPath returns "/api/items/{id}/reviews".
func reviewsPath(id int) string {
	if id >= 1 && id <= catalog {
		return idPaths().reviews[id]
	}
	return itemPath(id) + "/reviews"
}

// humanPaths is the path model of one human: every action opens a view
// (navRoutes) about a current item, and the SPA's fan-out calls fetch details
// of that item and the usual side data (fanoutRoutes).
type humanPaths struct {
	item int // the item the user is looking at
}

// nav picks the first call of a new action.
func (h *humanPaths) nav(r *rand.Rand) route {
	// A skewed choice of item: a few items are popular.
	u := r.Float64()
	h.item = 1 + int(u*u*catalog)
	rt := navRoutes[r.IntN(len(navRoutes))]
	if rt.path == "" {
		rt.path = itemPath(h.item)
	}
	return rt
}

// fanout picks a follow-up call of the current action.
func (h *humanPaths) fanout(r *rand.Rand) route {
	rt := fanoutRoutes[r.IntN(len(fanoutRoutes))]
	switch rt.path {
	case "":
		rt.path = itemPath(h.item)
	case "r":
		rt.path = reviewsPath(h.item)
	}
	return rt
}

// User agents. Humans use browsers, scripts announce their library, and
// mimicking bots copy a browser.
var (
	desktopAgents = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
		"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
	}
	mobileAgents = []string{
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
	}
	scriptAgents = []string{
		"python-requests/2.32.3",
		"Go-http-client/1.1",
		"curl/8.11.0",
		"okhttp/4.12.0",
	}
	scraperAgent = "Scrapy/2.12.0 (+https://scrapy.org)"
)

// pick returns a random element of s.
func pick(r *rand.Rand, s []string) string {
	return s[r.IntN(len(s))]
}
