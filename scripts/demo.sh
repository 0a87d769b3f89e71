#!/bin/sh
# make demo: the brief's two demonstrations on one machine, with no Docker
# and no Envoy. It starts Flow Lock (dashboard on 127.0.0.1:8080, at / and
# /status) and the sample API on 127.0.0.1:8000, which asks Flow Lock about
# every request through the Go middleware (package middleware), prints
# what to do, and stops both on Ctrl-C. Settings: scripts/demo-env.sh.
set -eu
cd "$(dirname "$0")/.."
. scripts/demo-env.sh

build flowlock-authz sample-api flowlock-sim

listen=$api
case $attacker in
*:*) listen="$api,[$attacker]:$api_port" ;; # the attacker's IPv6 way in
esac

flowlock_pid=
api_pid=
stop() {
	trap - INT TERM EXIT
	[ -z "$api_pid" ] || kill "$api_pid" 2>/dev/null || true
	[ -z "$flowlock_pid" ] || kill "$flowlock_pid" 2>/dev/null || true
	wait || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

# No --trusted-proxies and no --xff-trusted-hops: the middleware is the
# edge, so the client is the connection's source address.
"$bin/flowlock-authz" serve --grpc-addr "$grpc" --http-addr "$dashboard" \
	--quarantine-ttl "$ttl" --drain-delay 0s &
flowlock_pid=$!

wait_ok() { # url what pid
	i=0
	until "$bin/sample-api" healthcheck --url "$1" --timeout 1s >/dev/null 2>&1; do
		if ! kill -0 "$3" 2>/dev/null; then
			echo "demo: $2 exited (its error is above; is something else using its port?)" >&2
			exit 1
		fi
		i=$((i + 1))
		if [ $i -gt 60 ]; then
			echo "demo: $2 did not come up at $1 within 30 s" >&2
			exit 1
		fi
		sleep 0.5
	done
	# Something already on the port answers too (an earlier make demo):
	# ours must still be running, or its port was taken.
	sleep 0.3
	if ! kill -0 "$3" 2>/dev/null; then
		echo "demo: $2 exited (its error is above; is something else using its port?)" >&2
		exit 1
	fi
}
wait_ok "http://$dashboard/readyz" "Flow Lock" "$flowlock_pid"

"$bin/sample-api" --addr "$listen" --flowlock-addr "$grpc" &
api_pid=$!
wait_ok "http://$api/healthz" "the sample API" "$api_pid"

for pid in "$flowlock_pid" "$api_pid"; do
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "demo: a process of the demo exited before it was ready (its error is above)" >&2
		exit 1
	fi
done

cat <<MSG

Flow Lock demo: the sample API on http://$api is protected by Flow Lock
through the Go middleware. Ctrl-C stops both.

  1. Be a person: open http://$api/data in your browser and refresh it by
     hand, at whatever pace you like. Each answer carries "flowlock_risk",
     your score (0-100); it stays low.

  2. Watch: open the dashboard, http://$dashboard/status. Your browser is
     127.0.0.1.

  3. Attack: in a second terminal run

       make attack

     (or: $bin/flowlock-sim http --target $attack_target --source-ip $attacker --scenario fixed-0.5s --duration 20s)

     A bot sends a request every 0.5 s from $attacker. Within about ten
     seconds Flow Lock quarantines it: its requests get 403 with Retry-After
     and a JSON body, the dashboard shows $attacker in the Quarantine Zone,
     and you stay allowed. The quarantine heals $ttl after it began.

MSG
wait || true
