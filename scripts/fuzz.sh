#!/usr/bin/env bash
# fuzz.sh DURATION: run every Fuzz* target of the module for DURATION each.
# `go test -fuzz` takes one target of one package at a time, so list them.
#
# A real finding always writes "Failing input written to testdata/...".
# Without one, a failure is the fuzzing engine's own hiccup (Go reports
# "context deadline exceeded" when the time runs out while a worker is
# still busy, e.g. on a loaded machine): that target is run once more, and
# only a second failure fails the run.
set -euo pipefail
dur="${1:-5s}"
cd "$(dirname "$0")/.."
found=0
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
while IFS= read -r file; do
	pkg="./$(dirname "$file")"
	for fn in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
		found=$((found + 1))
		echo "fuzz $pkg $fn ($dur)"
		if go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$dur" "$pkg" >"$log" 2>&1; then
			tail -n 1 "$log"
			continue
		fi
		cat "$log"
		if grep -q "Failing input written" "$log"; then
			exit 1
		fi
		echo "fuzz: $fn failed without a failing input; running it once more"
		go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$dur" "$pkg"
	done
done < <(grep -rlE '^func Fuzz' --include='*_test.go' . | sed 's|^\./||' | sort)
echo "fuzz: $found targets ran"
