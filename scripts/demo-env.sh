# Settings shared by demo.sh and attack.sh (sourced, not run). Every one
# can be overridden from the environment (DEMO_*, not FLOWLOCK_*, which
# flowlock-authz would read as its own settings); test/demo does, to run
# the demo on free ports.

go=${GO:-go}
bin=${DEMO_BIN:-bin}                  # where the binaries are, or are built
api=${DEMO_API:-127.0.0.1:8000}        # the sample API, protected by Flow Lock
dashboard=${DEMO_HTTP:-127.0.0.1:8080} # Flow Lock's dashboard and API
grpc=${DEMO_GRPC:-127.0.0.1:9191}      # Flow Lock's ext_authz gRPC, for the middleware
ttl=${DEMO_TTL:-30s}                   # how long a first quarantine lasts
api_port=${api##*:}

# The attacker's own address, so that Flow Lock tells it from you (your
# browser is 127.0.0.1) with no flag: 127.0.0.2 where this host can send
# from it, which Linux always can (all of 127.0.0.0/8 is on lo). macOS has
# only 127.0.0.1 on lo0 unless an alias is added, so there the attacker
# sends from ::1 instead, to the API's IPv6 loopback listener: another
# real address, scored by the same code (docs/RATIONALE.md, "The demo's
# attacker has an address of its own").
if [ -n "${DEMO_ATTACKER_IP:-}" ]; then
	attacker=$DEMO_ATTACKER_IP
elif [ "$(uname -s)" = Linux ] || ifconfig lo0 2>/dev/null | grep -q 'inet 127\.0\.0\.2 '; then
	attacker=127.0.0.2
else
	attacker=::1
fi
case $attacker in
*:*) attack_target="http://[$attacker]:$api_port" ;;
*) attack_target="http://$api" ;;
esac

# build compiles the named commands into $bin unless DEMO_BIN
# names binaries built already, saying so: a cold build takes a while.
build() {
	if [ -n "${DEMO_BIN:-}" ]; then
		return
	fi
	echo "compiling $* into $bin/ (the first time takes a minute)..."
	pkgs=
	for c in "$@"; do pkgs="$pkgs ./cmd/$c"; done
	# shellcheck disable=SC2086 # one word per package
	CGO_ENABLED=0 "$go" build -o "$bin/" $pkgs
}
