#!/usr/bin/env bash
# pytypes.sh: type-check the Python package (sdk/python/offload) with
# pyright, as `make test` does: the package ships py.typed, so users who
# type-check their own code rely on its annotations being right.
#
# Idempotent: installs the pinned pyright from npm when it is missing (and,
# as root, Debian's nodejs and npm when those are), then runs it with the
# settings in sdk/python/pyproject.toml ([tool.pyright]: Python 3.9, the
# package only; tests and examples are scripts, not checked).
set -euo pipefail
PYRIGHT_VERSION=1.1.389
cd "$(dirname "$0")/.."

have() { command -v pyright >/dev/null 2>&1 && [ "$(pyright --version 2>/dev/null | awk '{print $2}')" = "$PYRIGHT_VERSION" ]; }

if ! have; then
	if ! command -v npm >/dev/null 2>&1; then
		if [ "$(id -u)" -ne 0 ]; then
			echo "pytypes: npm is missing; install nodejs and npm (apt-get install nodejs npm)" >&2
			exit 1
		fi
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y --no-install-recommends nodejs npm >&2 || { apt-get update >&2 && apt-get install -y --no-install-recommends nodejs npm >&2; }
	fi
	echo "pytypes: installing pyright@$PYRIGHT_VERSION" >&2
	npm install -g --no-audit --no-fund "pyright@$PYRIGHT_VERSION" >&2
fi
pyright --version >&2
exec pyright -p sdk/python
