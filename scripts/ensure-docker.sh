#!/usr/bin/env bash
# ensure-docker.sh: make sure a Docker engine answers on this machine.
#
# Idempotent. When `docker info` already answers it exits 0 at once. As root it
# installs Debian's docker.io when dockerd is missing and starts dockerd in the
# background (no systemd needed; log in /tmp/dockerd.log), then waits up to
# 60 s for the engine to answer. Without root and without an engine it says
# how to get one and exits non-zero.
set -euo pipefail

WAIT_SECONDS="${ENSURE_DOCKER_WAIT:-60}"
LOG="${DOCKERD_LOG:-/tmp/dockerd.log}"

engine_answers() {
	docker info >/dev/null 2>&1
}

# gVisor (Debian's runsc) registered as the engine runtime "runsc" with
# --network=none: providers offer it as an isolation option (tasks without
# network only). Returns 0 when daemon.json changed.
register_runsc() {
	[ "$(id -u)" -eq 0 ] || return 1
	if ! command -v runsc >/dev/null 2>&1; then
		echo "ensure-docker: installing runsc (gVisor)" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y runsc >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y runsc >/dev/null 2>&1; } || {
			echo "ensure-docker: runsc could not be installed; gVisor isolation stays off" >&2
			return 1
		}
	fi
	mkdir -p /etc/docker
	python3 - "$(command -v runsc)" <<'PY'
import json, os, sys
path = "/etc/docker/daemon.json"
cfg = json.load(open(path)) if os.path.exists(path) else {}
want = {"path": sys.argv[1], "runtimeArgs": ["--platform=ptrace", "--network=none"]}
if cfg.get("runtimes", {}).get("runsc") == want:
    sys.exit(1)
cfg.setdefault("runtimes", {})["runsc"] = want
json.dump(cfg, open(path, "w"), indent=2)
PY
}

if command -v docker >/dev/null 2>&1 && engine_answers; then
	if register_runsc && pgrep -x dockerd >/dev/null 2>&1; then
		echo "ensure-docker: registered runsc; reloading dockerd" >&2
		kill -HUP "$(pgrep -x dockerd)"
		sleep 1
	fi
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	cat >&2 <<'MSG'
ensure-docker: no Docker engine answers and this script is not running as root.
  Install one:  sudo apt-get update && sudo apt-get install -y docker.io
  Start it:     sudo systemctl start docker   (or: sudo dockerd >/tmp/dockerd.log 2>&1 &)
  Then make sure your user can reach /var/run/docker.sock (e.g. the docker group),
  or point DOCKER_HOST at a running engine.
MSG
	exit 1
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
	echo "ensure-docker: installing docker.io" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y docker.io
fi

register_runsc || true

if ! pgrep -x dockerd >/dev/null 2>&1; then
	echo "ensure-docker: starting dockerd (log: $LOG)" >&2
	# A stale pid file from a previous container life stops dockerd from starting.
	rm -f /var/run/docker.pid
	# dockerd outlives this script: it must not inherit any descriptor
	# beyond the three it is given, or it holds them for good (a lock the
	# caller held, as in `flock LOCK bench/run`, would never be released).
	(
		for fd in /proc/self/fd/*; do
			n="${fd##*/}"
			if [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null || true; fi
		done
		exec nohup dockerd >"$LOG" 2>&1 </dev/null
	) &
fi

for _ in $(seq 1 "$WAIT_SECONDS"); do
	if engine_answers; then
		echo "ensure-docker: engine ready" >&2
		exit 0
	fi
	sleep 1
done

echo "ensure-docker: dockerd did not answer within ${WAIT_SECONDS}s; last lines of $LOG:" >&2
tail -n 30 "$LOG" >&2 || true
exit 1
