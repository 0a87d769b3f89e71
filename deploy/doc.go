// Package deploy holds Flow Lock's deployment files — the Envoy bootstrap
// (envoy.yaml), Kubernetes manifests (kubernetes/), Istio configuration
// (istio/) and the Prometheus scrape config (prometheus/) — together with the
// tests that validate them and the top-level Dockerfile and
// docker-compose.yml. There is no Go API here: the package exists so that
// `go test ./deploy/...` checks every file the way the tool that consumes it
// would, and fails on the mistakes those tools only report at deploy time.
package deploy
