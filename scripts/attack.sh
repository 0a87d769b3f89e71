#!/bin/sh
# make attack: while make demo runs, a bot on a fixed 0.5 s rhythm against
# the demo's sample API, sending from its own address so that Flow Lock
# tells it from you. Settings: scripts/demo-env.sh.
set -eu
cd "$(dirname "$0")/.."
. scripts/demo-env.sh

if [ ! -x "$bin/flowlock-sim" ]; then
	build flowlock-sim
fi
if [ "$attacker" = ::1 ]; then
	cat <<MSG
This host cannot send from 127.0.0.2 (macOS keeps only 127.0.0.1 on lo0), so
the attacker sends from ::1 to http://[::1]:$api_port, which make demo serves
too. To attack from 127.0.0.2 instead, add the alias and run make attack again:
  sudo ifconfig lo0 alias 127.0.0.2 up     (undo: sudo ifconfig lo0 -alias 127.0.0.2)

MSG
fi
exec "$bin/flowlock-sim" http --target "$attack_target" --source-ip "$attacker" \
	--scenario fixed-0.5s --duration "${DEMO_ATTACK_DURATION:-20s}"
