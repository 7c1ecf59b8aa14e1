#!/usr/bin/env bash
# ensure-chromium.sh: make sure a headless-capable Chromium is installed, for
# the dashboard's browser test (node/dashboard_test.go).
#
# Idempotent and quick when Chromium is already there: it only checks the
# PATH. As root it installs Debian's `chromium` package (apt-get). Without
# root and without Chromium it says how to get one and exits non-zero; the
# test then skips (or fails when CI=true). Prints the browser's path.
set -euo pipefail

find_chromium() {
	for b in chromium chromium-browser google-chrome-stable google-chrome; do
		if command -v "$b" >/dev/null 2>&1; then
			command -v "$b"
			return 0
		fi
	done
	return 1
}

if find_chromium; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	cat >&2 <<'MSG'
ensure-chromium: no Chromium found and this script is not running as root.
  Install one:  sudo apt-get update && sudo apt-get install -y chromium
MSG
	exit 1
fi

echo "ensure-chromium: installing chromium" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh container may have no package lists yet; update only when the
# install fails without them.
if ! apt-get install -y --no-install-recommends chromium fonts-dejavu-core >&2; then
	apt-get update >&2
	apt-get install -y --no-install-recommends chromium fonts-dejavu-core >&2
fi
find_chromium
