# syntax=docker/dockerfile:1

# Flow Lock images. Two targets share one Go build:
#
#   flowlock    (default) flowlock-authz, the ext_authz service, and
#               flowlock-sim, the traffic generator, on distroless/static
#   sample-api  the demo upstream
#   honeypot    flowlock-honeypot, the decoy quarantined clients are routed
#               to under --quarantine-action honeypot: an image of its own,
#               with nothing of the real API or of Flow Lock in it
#
#   docker build -t flowlock/flowlock:dev .
#   docker build -t flowlock/sample-api:dev --target sample-api .
#   docker build -t flowlock/honeypot:dev --target honeypot .
#
# Both run as the distroless "nonroot" user (65532) with no shell, so their
# health checks are subcommands of the binaries themselves.
# deploy/dockerfile_test.go checks this file against docker-compose.yml and
# deploy/kubernetes/.

ARG GO_VERSION=1.26

# The builder runs on the build host's platform and cross-compiles for the
# target one: a multi-arch build needs no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
# Stamped into flowlock-authz (flowlock-authz version); empty falls back to
# the Go build info.
ARG VERSION=""
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/ \
        ./cmd/flowlock-authz ./cmd/flowlock-sim ./cmd/sample-api ./cmd/flowlock-honeypot
# Flow Lock's state directory, created here because the runtime image has
# no shell. Docker copies an image directory's owner into a named volume
# mounted on it, so the nonroot user can write --state-file there.
RUN mkdir -p /out/var/lib/flowlock

FROM gcr.io/distroless/static-debian12:nonroot AS sample-api
COPY --from=build /out/sample-api /usr/local/bin/sample-api
USER nonroot:nonroot
EXPOSE 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["sample-api", "healthcheck"]
ENTRYPOINT ["sample-api"]

FROM gcr.io/distroless/static-debian12:nonroot AS honeypot
COPY --from=build /out/flowlock-honeypot /usr/local/bin/flowlock-honeypot
USER nonroot:nonroot
# 8090: the bait (the proxy's decoy upstream). 8091: the records API, for
# Flow Lock's dashboard only; never publish it where bots can reach it.
EXPOSE 8090 8091
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["flowlock-honeypot", "healthcheck"]
ENTRYPOINT ["flowlock-honeypot"]

FROM gcr.io/distroless/static-debian12:nonroot AS flowlock
COPY --from=build /out/flowlock-authz /out/flowlock-sim /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/var/lib/flowlock /var/lib/flowlock
USER nonroot:nonroot
# 9191: ext_authz gRPC (Check, grpc.health.v1, reflection).
# 8080: dashboard, /api/v1, /metrics, /healthz, /readyz.
EXPOSE 9191 8080
# Outside a container the HTTP side defaults to loopback; inside one,
# loopback is unreachable from the published port, so listen on every
# interface here (the admin token and --http-allowed-hosts still apply).
ENV FLOWLOCK_HTTP_ADDR=:8080
# Asks the gRPC health service on --grpc-addr (FLOWLOCK_GRPC_ADDR, default
# :9191) and exits 0 only when it says SERVING.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["flowlock-authz", "healthcheck"]
ENTRYPOINT ["flowlock-authz"]
CMD ["serve"]
