#!/usr/bin/env bash
# Installs what the end-to-end tests run against, idempotently:
#
#   nginx, haproxy, caddy   from Debian (bookworm: nginx 1.22, HAProxy 2.6,
#                           Caddy 2.6), for test/proxy
#   chromium                from Debian, for test/browser (never a
#                           downloaded browser)
#   redis-server,           from Debian (bookworm: Redis 7.0), for
#   redis-tools             internal/redisstore: the tests start their
#                           own servers and clusters on free ports; the
#                           system service is not started (policy-rc.d)
#                           and, if it runs anyway, is stopped
#                           apt-get update runs once, and only if a
#                           package is missing
#   grpcurl                 go install, pinned below
#   grpc-health-probe       go install, pinned below
#   golangci-lint           go install, pinned below (make lint)
#
# Go tools go to $FLOWLOCK_TOOLS_BIN, or else $(go env GOBIN), or else
# $(go env GOPATH)/bin; test/proxy looks in all three as well as on PATH.
# Needs root or sudo for apt-get. Debian's package scripts would start
# nginx, HAProxy and Redis as services; while installing, a policy-rc.d (if
# none exists) stops them from doing so.
set -euo pipefail

GRPCURL_VERSION=v1.9.4
GRPC_HEALTH_PROBE_VERSION=v0.4.62
GOLANGCI_LINT_VERSION=v2.15.0

packages=(nginx haproxy caddy chromium redis-server redis-tools)

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	sudo=(sudo)
fi

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ "${#missing[@]}" -gt 0 ]; then
	echo "== apt-get install ${missing[*]}"
	policy=/usr/sbin/policy-rc.d
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 755 "$policy"
		trap '"${sudo[@]}" rm -f "$policy"' EXIT
	fi
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for p in "${packages[@]}"; do
	echo "   $p $(dpkg-query -W -f='${Version}' "$p")"
done

# A system redis-server on 6379 is not what the tests talk to, and it
# would hold memory on a shared runner: stop it if something started it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
	echo "== stopping the redis-server system service"
	"${sudo[@]}" systemctl stop redis-server
	"${sudo[@]}" systemctl disable --quiet redis-server || true
fi

bin=${FLOWLOCK_TOOLS_BIN:-$(go env GOBIN)}
bin=${bin:-$(go env GOPATH | cut -d: -f1)/bin}
mkdir -p "$bin"

# install_go_tool PACKAGE VERSION NAME installs PACKAGE@VERSION as NAME
# unless the binary there was built from that module version already.
install_go_tool() {
	local pkg=$1 version=$2 name=$3
	if [ -x "$bin/$name" ] &&
		go version -m "$bin/$name" 2>/dev/null | awk -v v="$version" '$1 == "mod" && $3 == v { ok = 1 } END { exit !ok }'; then
		echo "   $name $version (already in $bin)"
		return
	fi
	echo "== go install $pkg@$version"
	# Outside the module: its go.mod and GOFLAGS must not apply.
	(cd / && GOBIN="$bin" GOFLAGS= go install "$pkg@$version")
	echo "   $name $version (in $bin)"
}

install_go_tool github.com/fullstorydev/grpcurl/cmd/grpcurl "$GRPCURL_VERSION" grpcurl
install_go_tool github.com/grpc-ecosystem/grpc-health-probe "$GRPC_HEALTH_PROBE_VERSION" grpc-health-probe
install_go_tool github.com/golangci/golangci-lint/v2/cmd/golangci-lint "$GOLANGCI_LINT_VERSION" golangci-lint
