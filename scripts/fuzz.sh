#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each (a duration such as
# 30s, or an execution count such as 20000x).
#
# A real finding always writes a reproducer under testdata/fuzz/<target>/ and
# fails at once, with the fuzzer's output. Go's fuzzing engine also has known
# spurious failures that find nothing (golang/go#51484 "context deadline
# exceeded" at the -fuzztime boundary, golang/go#56238 "fuzzing process hung"
# under CPU starvation); CI uses a count-based FUZZTIME to avoid the first,
# and a target that fails without writing a reproducer is run once more and
# fails the run only if it fails again. Every failure prints its output.
set -euo pipefail

fuzztime=${FUZZTIME:-30s}
go=${GO:-go}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run_target() { # pkg dir target
	local before after
	before=$(ls "$2/testdata/fuzz/$3" 2>/dev/null | sort || true)
	if "$go" test -run '^$' -fuzz "^$3\$" -fuzztime "$fuzztime" "$1" >"$log" 2>&1; then
		return 0
	fi
	after=$(ls "$2/testdata/fuzz/$3" 2>/dev/null | sort || true)
	echo "--- fuzz $1 $3 failed:" >&2
	tail -n 40 "$log" >&2
	if [[ "$before" != "$after" ]] || grep -q 'Failing input written to' "$log"; then
		# A reproducer: a real bug. Print it, since CI's checkout is thrown away.
		for f in $(comm -13 <(echo "$before") <(echo "$after")); do
			echo "--- $2/testdata/fuzz/$3/$f:" >&2
			head -c 2000 "$2/testdata/fuzz/$3/$f" >&2
		done
		return 2
	fi
	return 1
}

for pkg in $("$go" list ./...); do
	dir=$("$go" list -f '{{.Dir}}' "$pkg")
	# A package that does not build fails here (set -e), instead of
	# silently having no fuzz targets.
	listed=$("$go" test -list '^Fuzz' "$pkg")
	for target in $(grep '^Fuzz' <<<"$listed" || true); do
		echo "fuzz $pkg $target ($fuzztime)"
		rc=0
		run_target "$pkg" "$dir" "$target" || rc=$?
		case $rc in
		0) ;;
		2) echo "fuzz: $target found a failing input (above); fix it and commit the reproducer" >&2; exit 1 ;;
		*)
			echo "fuzz: $target failed without a reproducer; running it once more" >&2
			rc=0
			run_target "$pkg" "$dir" "$target" || rc=$?
			case $rc in
			0) ;;
			2) echo "fuzz: $target found a failing input (above); fix it and commit the reproducer" >&2; exit 1 ;;
			*) echo "fuzz: $target failed twice without a reproducer" >&2; exit 1 ;;
			esac
			;;
		esac
	done
done
