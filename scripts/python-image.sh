#!/usr/bin/env bash
# python-image.sh: build (once) a real Python image from Debian's packages,
# with no registry: debootstrap a minimal Debian root filesystem holding
# python3, numpy, venv and pip, trim it, and `docker import` it.
#
#   bash scripts/python-image.sh          # prints the image's tag
#
# Idempotent and cached. The tag names the recipe (RECIPE below): when an
# image with that tag exists the script only prints it. The trimmed root
# filesystem is kept as a tarball in CACHE_DIR, so a removed image comes back
# with a `docker import` and no download. Needs root (debootstrap) and a
# Docker engine (scripts/ensure-docker.sh starts one); Debian's package
# mirror is the only network it uses, and only when nothing is cached.
#
# The image has no USER: tasks run as the unprivileged user offload gives
# them, on a read-only root filesystem with a writable /tmp, so programs that
# install anything (pip into a venv) do it under /tmp.
set -euo pipefail

SUITE="${PYTHON_IMAGE_SUITE:-bookworm}"
MIRROR="${PYTHON_IMAGE_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="python3,python3-numpy,python3-venv,python3-pip"
# RECIPE changes whenever what goes into the image changes.
RECIPE="1-${SUITE}-$(printf '%s' "$PACKAGES" | sha256sum | cut -c1-8)"
TAG="${PYTHON_IMAGE_TAG:-offload/python:${RECIPE}}"
CACHE_DIR="${PYTHON_IMAGE_CACHE:-/var/cache/offload}"
TARBALL="$CACHE_DIR/python-rootfs-${RECIPE}.tar"

log() { echo "python-image: $*" >&2; }

if docker image inspect "$TAG" >/dev/null 2>&1; then
	echo "$TAG"
	exit 0
fi

if [ ! -s "$TARBALL" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		log "building the root filesystem needs root (debootstrap); run: sudo bash $0"
		exit 1
	fi
	if ! command -v debootstrap >/dev/null 2>&1; then
		log "installing debootstrap"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y debootstrap >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y debootstrap >/dev/null; }
	fi
	mkdir -p "$CACHE_DIR"
	work="$(mktemp -d "$CACHE_DIR/python-rootfs.XXXXXX")"
	trap 'rm -rf "$work"' EXIT
	log "debootstrap $SUITE with $PACKAGES (about a minute; log: $work.log)"
	if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs" "$MIRROR" >"$work.log" 2>&1; then
		tail -20 "$work.log" >&2
		log "debootstrap failed"
		exit 1
	fi
	rm -f "$work.log"
	root="$work/rootfs"
	# What a runtime image never reads: package caches, docs, manuals, locales.
	rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
		"$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/info "$root"/usr/share/locale \
		"$root"/var/log/* "$root"/tmp/*
	find "$root" -name __pycache__ -type d -prune -exec rm -rf {} +
	# Check the image's promise before caching it.
	chroot "$root" python3 -c 'import numpy, venv, pip' || { log "python3 with numpy, venv and pip does not start in the new root"; exit 1; }
	tar --numeric-owner -C "$root" -cf "$TARBALL.part" .
	mv "$TARBALL.part" "$TARBALL"
fi

log "importing $TARBALL as $TAG"
docker import \
	--change 'ENV LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1' \
	--change 'WORKDIR /' \
	--change 'CMD ["python3"]' \
	--change "LABEL org.offload.recipe=$RECIPE" \
	"$TARBALL" "$TAG" >/dev/null
echo "$TAG"
