#!/usr/bin/env bash
# =====================================================================================================
#  OFFLINE STAND-IN BASE IMAGES -- FOR A MACHINE WITHOUT ANY IMAGE REGISTRY. NEVER USE FOR PRODUCTION.
# =====================================================================================================
# Our Dockerfiles start FROM python:3.11-slim and FROM tensorflow/tensorflow:2.21.0-gpu. Where Docker Hub
# cannot be reached, this script makes local look-alikes from Debian packages and PyPI only, and tags them
# under the upstream names so the Dockerfiles build unchanged:
#
#   python:3.11-slim                  debootstrap'ed Debian bookworm (minbase) + python3.11 + a venv at
#                                     /usr/local (so `python` and `pip` are on PATH and `pip install` works
#                                     system-wide, as in the official image). Debian's python, not python.org's.
#   tensorflow/tensorflow:2.21.0-gpu  that rootfs + `pip install tensorflow==2.21.0` (the PyPI wheel, which runs
#                                     on the CPU and has no CUDA libraries). NOT the upstream GPU image: no CUDA,
#                                     no cuDNN; an extractor built on it runs on the CPU only.
#
# Both carry the label offline-stand-in=true. The host's extra CA certificates (default
# /usr/local/share/ca-certificates) are installed into the rootfs so pip works behind the same TLS proxy as
# the host. If the real images can be pulled, pull them instead (`docker rmi` these first).
#
# Usage (root, dockerd running, deb.debian.org and pypi.org reachable):
#   deploy/offline-images.sh            # idempotent: skips images that already exist
#   FORCE=1 deploy/offline-images.sh    # rebuild both
# Env: OFFLINE_WORKDIR (/var/tmp/offline-images), DEBIAN_MIRROR (http://deb.debian.org/debian),
#      EXTRA_CA_DIR (/usr/local/share/ca-certificates), SKIP_TENSORFLOW=1 (base only).
#
# Disk: the TensorFlow image is ~2.2 GB. It is installed into a rootfs directory on the host (chroot) and
# streamed into `docker import` with `tar --remove-files`, so the peak is ~1x its size, not the ~2x of a
# `docker build` RUN step (which keeps the container's layer while committing a copy of it).
set -euo pipefail

BASE_TAG=python:3.11-slim
TF_TAG=tensorflow/tensorflow:2.21.0-gpu
TF_VERSION=2.21.0
SUITE=bookworm
WORK=${OFFLINE_WORKDIR:-/var/tmp/offline-images}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
EXTRA_CA_DIR=${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}
FORCE=${FORCE:-0}
NICE=(nice -n 10)
ROOTFS="$WORK/rootfs"
STANDIN_LABEL="offline-stand-in=true"
# What `docker import` bakes in, like the official image's config (PATH with /usr/local/bin first).
IMAGE_CHANGES=(
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin'
  --change 'ENV LANG=C.UTF-8'
  --change "LABEL $STANDIN_LABEL"
  --change 'CMD ["python3"]'
)

log() { printf '[offline-images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

[[ $(id -u) == 0 ]] || die "run as root (debootstrap and chroot need it)"
docker info >/dev/null 2>&1 || die "no Docker daemon: start one, e.g. nohup nice -n 10 dockerd --iptables=false >/tmp/dockerd.log 2>&1 &"
command -v debootstrap >/dev/null || die "debootstrap missing: apt-get install -y debootstrap"

MOUNTED=()
cleanup() {
  local m
  for m in "${MOUNTED[@]}"; do umount -l "$m" 2>/dev/null || true; done
}
trap cleanup EXIT

in_rootfs() {
  # Run a command inside the rootfs with /proc mounted and the host's DNS.
  if ! mountpoint -q "$ROOTFS/proc"; then
    mount -t proc proc "$ROOTFS/proc"
    MOUNTED+=("$ROOTFS/proc")
  fi
  cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
  "${NICE[@]}" chroot "$ROOTFS" /usr/bin/env -i \
    PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive "$@"
}

release_rootfs() {
  # Unmount /proc and drop the build-time resolv.conf before the rootfs is archived.
  if mountpoint -q "$ROOTFS/proc"; then umount -l "$ROOTFS/proc"; fi
  : >"$ROOTFS/etc/resolv.conf"
}

make_base_rootfs() {
  log "debootstrap $SUITE (minbase) into $ROOTFS"
  rm -rf "$ROOTFS"
  mkdir -p "$WORK"
  "${NICE[@]}" debootstrap --variant=minbase \
    --include=python3,python3-venv,ca-certificates,netbase,tzdata \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || die "debootstrap failed; see $WORK/debootstrap.log"
  # Same sources as the host's Debian, so `apt-get install` works in images built on this base.
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
    "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SUITE" >"$ROOTFS/etc/apt/sources.list"
  if compgen -G "$EXTRA_CA_DIR/*.crt" >/dev/null; then
    log "installing the host's extra CA certificates from $EXTRA_CA_DIR"
    cp "$EXTRA_CA_DIR"/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
    in_rootfs update-ca-certificates >/dev/null
  fi
  # python:3.11-slim has python/pip in /usr/local/bin; a venv there gives the same, and keeps pip away
  # from Debian's own python3 packages (PEP 668 would refuse a system-wide pip install otherwise).
  in_rootfs python3 -m venv /usr/local
  in_rootfs python -m pip --version >/dev/null
  # Keep it slim: no apt lists, caches or docs (as the official image).
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/var/log/*.log
  find "$ROOTFS" -xdev -name __pycache__ -prune -exec rm -rf {} +
}

rootfs_from_image() {
  # Rebuild the rootfs directory from an existing base image (no second debootstrap).
  log "unpacking $BASE_TAG into $ROOTFS"
  rm -rf "$ROOTFS"
  mkdir -p "$ROOTFS"
  local cid
  cid=$(docker create "$BASE_TAG" true)
  docker export "$cid" | tar -x -C "$ROOTFS"
  docker rm "$cid" >/dev/null
}

import_rootfs() {  # import_rootfs TAG MESSAGE REMOVE(0|1)
  local tag=$1 message=$2 remove=$3 tar_flags=()
  release_rootfs
  [[ $remove == 1 ]] && tar_flags=(--remove-files)
  log "importing $ROOTFS as $tag"
  "${NICE[@]}" tar --numeric-owner -C "$ROOTFS" "${tar_flags[@]}" -c . \
    | docker import "${IMAGE_CHANGES[@]}" --message "$message" - "$tag" >/dev/null
}

if [[ $FORCE == 1 ]]; then
  docker rmi "$TF_TAG" "$BASE_TAG" >/dev/null 2>&1 || true
fi

if have_image "$BASE_TAG"; then
  log "$BASE_TAG exists: $(docker image inspect -f '{{.Id}} stand-in={{index .Config.Labels "offline-stand-in"}}' "$BASE_TAG")"
else
  make_base_rootfs
  import_rootfs "$BASE_TAG" "offline stand-in for $BASE_TAG: Debian $SUITE python3.11, NOT the official image" 0
fi
docker run --rm "$BASE_TAG" python -c 'import sys, ssl; print("base python", sys.version.split()[0])'

if [[ ${SKIP_TENSORFLOW:-0} == 1 ]]; then
  log "SKIP_TENSORFLOW=1: not building $TF_TAG"
elif have_image "$TF_TAG"; then
  log "$TF_TAG exists: $(docker image inspect -f '{{.Id}}' "$TF_TAG")"
else
  [[ -x $ROOTFS/usr/local/bin/python ]] || rootfs_from_image
  log "pip install tensorflow==$TF_VERSION into the rootfs (downloads ~600 MB)"
  in_rootfs python -m pip install "tensorflow==$TF_VERSION" >"$WORK/pip-tensorflow.log" 2>&1 \
    || die "pip install tensorflow failed; see $WORK/pip-tensorflow.log"
  find "$ROOTFS" -xdev -name __pycache__ -prune -exec rm -rf {} +
  import_rootfs "$TF_TAG" "offline stand-in for $TF_TAG: $BASE_TAG stand-in + PyPI tensorflow==$TF_VERSION (CPU only, no CUDA)" 1
fi
rm -rf "$ROOTFS"
if have_image "$TF_TAG"; then
  docker run --rm "$TF_TAG" python -c 'import tensorflow as tf; print("tensorflow", tf.__version__, "GPUs:", len(tf.config.list_physical_devices("GPU")))' 2>/dev/null
fi
log "done: $(docker images --filter label=$STANDIN_LABEL --format '{{.Repository}}:{{.Tag}} {{.Size}}' | tr '\n' ' ')"
