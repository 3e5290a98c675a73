#!/usr/bin/env bash
# Offline smoke test of the Docker deployment, end to end: stand-in base images, build our three images
# with their unchanged Dockerfiles, check each image alone, start the compose stack with offline stand-ins
# for etcd/MinIO/Milvus (deploy/compose.offline.yml), index sample photos with the loader job, extract to
# HDF5 and import it, search through the published port, load the web page, then tear everything down.
#
# Run by hand, NOT in CI: needs root, a running dockerd, deb.debian.org and pypi.org, ~6 GB of Docker
# storage and a few minutes. Exits non-zero on the first failure; always removes its containers, networks
# and volumes (trap), keeps the images (rebuilds are cached).
#
#   deploy/offline-smoke.sh
# Env: SMOKE_PROJECT (imgsearch-smoke), SMOKE_SEARCH_PORT (15080), SMOKE_PYTHON (.venv/bin/python: makes
#      the sample JPEGs with scikit-image and reads JSON), SMOKE_KEEP_UP=1 (leave the stack running).
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=${SMOKE_PROJECT:-imgsearch-smoke}
PORT=${SMOKE_SEARCH_PORT:-15080}
PY=${SMOKE_PYTHON:-.venv/bin/python}
WORK=$(mktemp -d /tmp/offline-smoke.XXXXXX)
ENV_FILE=$WORK/env
CHECK_NET=${PROJECT}_imagecheck
COMPOSE=(docker-compose -p "$PROJECT" --env-file "$ENV_FILE" -f docker-compose.yml -f deploy/compose.offline.yml
         --profile cpu)
COMPOSE_WITH_LOADER=("${COMPOSE[@]}" --profile loader)  # `build` skips the loader job's profile otherwise
IMPORT_DIR_EXISTED=$([[ -e import ]] && echo 1 || echo 0)
START=$(date +%s)
STEP_START=$START

log() { printf '[smoke %4ds] %s\n' "$(( $(date +%s) - START ))" "$*"; }
step() {
  local now; now=$(date +%s)
  [[ -n ${STEP_NAME:-} ]] && printf '[smoke] TIMING %-28s %4ds\n' "$STEP_NAME" "$(( now - STEP_START ))"
  STEP_NAME=$1; STEP_START=$now
  log "== $1"
}
fail() { log "FAILED: $*"; exit 1; }
json() { "$PY" -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

cleanup() {
  local rc=$?
  set +e
  if [[ $rc != 0 ]]; then
    log "failure (exit $rc): state and log tails follow"
    "${COMPOSE[@]}" ps
    "${COMPOSE[@]}" logs --tail 30 2>&1 | tail -150
  fi
  docker rm -f "${PROJECT}_extractor_check" >/dev/null 2>&1
  docker network rm "$CHECK_NET" >/dev/null 2>&1
  if [[ ${SMOKE_KEEP_UP:-0} == 1 && $rc == 0 ]]; then
    log "SMOKE_KEEP_UP=1: stack left running; stop it with: ${COMPOSE[*]} down -v (env file $ENV_FILE)"
    return
  fi
  "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1
  # Docker creates the loader's ./import bind-mount source (and import/images, the mount point of the
  # images volume inside it) when missing; leave the tree as found.
  [[ $IMPORT_DIR_EXISTED == 0 ]] && rmdir import/images import 2>/dev/null
  rm -rf "$WORK"
  log "cleaned up (exit $rc)"
}
trap cleanup EXIT

wait_healthy() {  # wait_healthy SERVICE TIMEOUT_S
  local svc=$1 timeout=$2 cid status t0
  t0=$(date +%s)
  cid=$("${COMPOSE[@]}" ps -q "$svc")
  [[ -n $cid ]] || fail "$svc has no container"
  while :; do
    status=$(docker inspect -f '{{.State.Health.Status}}' "$cid")
    [[ $status == healthy ]] && { log "$svc healthy after $(( $(date +%s) - t0 ))s"; return; }
    (( $(date +%s) - t0 > timeout )) && fail "$svc not healthy after ${timeout}s (status $status)"
    sleep 2
  done
}

[[ $(id -u) == 0 ]] || fail "run as root"
docker info >/dev/null 2>&1 || fail "no Docker daemon (see docs/DEPLOY.md, 'What was run here')"
command -v docker-compose >/dev/null || fail "docker-compose missing (apt-get install docker-compose)"
[[ -x $PY ]] || fail "$PY missing: run make setup, or set SMOKE_PYTHON to a python with scikit-image"

# The production env file, with the offline choices: CPU extractor, weights that need no download.
sed -e 's/^COMPOSE_PROFILES=.*/COMPOSE_PROFILES=cpu/' -e 's/^EXTRACTOR_WEIGHTS=.*/EXTRACTOR_WEIGHTS=hed-vgg16/' \
    -e "s/^SEARCH_PORT=.*/SEARCH_PORT=$PORT/" -e 's/^MINIO_ROOT_PASSWORD=.*/MINIO_ROOT_PASSWORD=smoke-test-only/' \
    .env.example >"$ENV_FILE"

step "base images"
deploy/offline-images.sh

step "build (compose)"
nice -n 10 "${COMPOSE_WITH_LOADER[@]}" build >"$WORK/build.log" 2>&1 \
  || { tail -40 "$WORK/build.log"; fail "docker-compose build"; }
docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^(${PROJECT}_|image-search-offline/)" | sed 's/^/  /' || true

step "image checks"
docker network create "$CHECK_NET" >/dev/null
docker run -d --name "${PROJECT}_extractor_check" --network "$CHECK_NET" -p 127.0.0.1::8001 \
  -e EXTRACTOR_WEIGHTS=hed-vgg16 "${PROJECT}_extractor-cpu" >/dev/null
ex_url="http://$(docker port "${PROJECT}_extractor_check" 8001/tcp | head -1)"
for _ in $(seq 90); do curl -sf "$ex_url/readyz" >/dev/null && break; sleep 2; done
curl -sf "$ex_url/readyz" >/dev/null || fail "extractor image: /readyz never answered 200"
"$PY" - "$WORK/photos" <<'EOF'
"""Write a few small JPEGs of real photos (scikit-image's sample data) for the smoke test."""
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

out = Path(sys.argv[1])
out.mkdir(parents=True)
for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field"):
    image = Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB")
    image.thumbnail((320, 320))
    image.save(out / f"{name}.jpg", quality=90)
EOF
dim=$(curl -sf -F "image=@$WORK/photos/coffee.jpg" "$ex_url/v1/extract" | json 'len(d["results"][0]["vector"])')
[[ $dim == 512 ]] || fail "extractor image: /v1/extract returned a vector of $dim values"
log "extractor image: /readyz 200, /v1/extract -> 512-d vector ($(curl -sf "$ex_url/v1/info" | json 'd["fingerprint"]'))"
docker rm -f "${PROJECT}_extractor_check" >/dev/null
docker run --rm "${PROJECT}_loader" --help | grep -q "Commands:" || fail "loader image: --help"
log "loader image: --help OK"

step "compose up"
# Images into the volume first, as docs/DEPLOY.md says (the loader image is the volume's first user).
"${COMPOSE[@]}" run --rm -T --no-deps -v "$WORK/photos:/smoke:ro" --entrypoint sh loader -c 'cp /smoke/*.jpg /data/images/'
nice -n 10 "${COMPOSE[@]}" up -d
wait_healthy milvus 180
wait_healthy search 120
wait_healthy extractor-cpu 240
curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null || fail "search /healthz on the published port"
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || fail "search /readyz: $(curl -s "http://127.0.0.1:$PORT/readyz")"
log "search service ready on 127.0.0.1:$PORT"

step "load catalogue"
mkdir -p "$WORK/out"
"${COMPOSE[@]}" run --rm -T -v "$WORK/out:/out" loader index /data/images --work-file /out/index-work.h5
"${COMPOSE[@]}" run --rm -T -v "$WORK/out:/out" loader extract /data/images -o /out/features.h5
"${COMPOSE[@]}" run --rm -T -v "$WORK/out:/out" -e COLLECTION=smoke_import loader import /out/features.h5
# Bulk mode: import files uploaded into Milvus's bucket (S3_* from the compose file), then a server import job.
bulk=$("${COMPOSE[@]}" run --rm -T -v "$WORK/out:/out" -e COLLECTION=smoke_bulk loader import /out/features.h5 \
       --mode bulk --index FLAT -q | tail -n 1)
echo "  $bulk"
[[ $bulk == "read 6, imported 6, skipped 0, "* ]] || fail "bulk import through the bucket: $bulk"
count=$(curl -sf "http://127.0.0.1:$PORT/v1/stats" | json 'd["count"]')
[[ $count == 6 ]] || fail "/v1/stats count is $count, expected 6"
log "catalogue: $count images (index), and the same 6 imported from HDF5 into collections smoke_import (insert) and smoke_bulk (bulk, through the bucket)"

step "search"
result=$(curl -sf -F "image=@$WORK/photos/coffee.jpg" -F top_k=3 "http://127.0.0.1:$PORT/v1/search")
echo "$result" | json '"\n".join("  %-28s %.4f" % (r["name"], r["score"]) for r in d["results"])'
top=$(echo "$result" | json 'd["results"][0]["name"] + " " + str(round(d["results"][0]["score"], 3))')
[[ $top == "coffee.jpg 1.0" ]] || fail "search for coffee.jpg: best hit $top, expected coffee.jpg 1.0"
file_url=$(echo "$result" | json 'd["results"][0]["url"]')
curl -sf -o "$WORK/hit.jpg" "http://127.0.0.1:$PORT$file_url" || fail "result url $file_url"
cmp -s "$WORK/hit.jpg" "$WORK/photos/coffee.jpg" || fail "result url $file_url did not serve coffee.jpg"
upload=$(curl -sf -F "image=@$WORK/photos/rocket.jpg" -F name=uploads/rocket-copy.jpg "http://127.0.0.1:$PORT/v1/images") \
  || fail "POST /v1/images (storing an upload in the images volume): $(curl -s -F "image=@$WORK/photos/rocket.jpg" \
           -F name=uploads/rocket-copy.jpg "http://127.0.0.1:$PORT/v1/images")"
curl -sf -o "$WORK/upload.jpg" "http://127.0.0.1:$PORT$(echo "$upload" | json 'd["url"]')" || fail "uploaded file not served"
count=$(curl -sf "http://127.0.0.1:$PORT/v1/stats" | json 'd["count"]')
[[ $count == 7 ]] || fail "/v1/stats count after an upload is $count, expected 7"
page=$(curl -sf "http://127.0.0.1:$PORT/") || fail "GET / (web page)"
grep -qi "<html" <<<"$page" || fail "GET / is not an HTML page"
log "search: coffee.jpg -> coffee.jpg (score 1.0), its file served; upload stored and served (7 images); web page ${#page} bytes"

step "storage"
# Milvus really keeps its metadata in the etcd service and its segments in the S3 service.
etcd_keys=$("${COMPOSE[@]}" exec -T etcd etcdctl get --prefix by-dev --keys-only | grep -c . || true)
s3_objects=$("${COMPOSE[@]}" exec -T minio python -c "import re, urllib.request
body = urllib.request.urlopen('http://127.0.0.1:9000/a-bucket?list-type=2', timeout=10).read().decode()
print(len(re.findall('<Key>', body)))")
(( etcd_keys > 0 && s3_objects > 0 )) || fail "Milvus storage: $etcd_keys etcd keys, $s3_objects S3 objects"
log "Milvus state: $etcd_keys keys in etcd, $s3_objects objects in the S3 bucket a-bucket"

step "done"
log "SMOKE TEST PASSED in $(( $(date +%s) - START ))s"
