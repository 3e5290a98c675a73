"""End to end on real parts: Milvus, extractor and search service as processes, the loader CLI between.

Images go in through `python -m loader index`, one of them is searched by over HTTP, and it must come
back first with a cosine score >= 0.99.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest
import requests

from devstack.processes import REPO

pytestmark = pytest.mark.integration


def _search(url: str, path, top_k: int = 5) -> dict:
    with open(path, "rb") as fh:
        resp = requests.post(f"{url}/v1/search", files={"image": (path.name, fh)}, data={"top_k": top_k}, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_index_folder_then_search_by_image(
    milvus_server, extractor_service, search_service, search_collection, image_root, sample_photos
):
    for photo in sample_photos.iterdir():
        shutil.copy2(photo, image_root / photo.name)

    env = {
        "MILVUS_URI": milvus_server.uri,
        "EXTRACTOR_URL": extractor_service.url,
        "COLLECTION": search_collection,
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "loader", "index", str(image_root), "--quiet"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    query = image_root / "chelsea.jpg"
    # Bounded consistency: freshly imported rows become searchable within a few seconds.
    deadline = time.monotonic() + 20
    while True:
        body = _search(search_service.url, query)
        if body["results"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    results = body["results"]
    assert results, body
    assert results[0]["name"] == "chelsea.jpg"
    assert results[0]["score"] >= 0.99
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert len({r["name"] for r in results}) == len(results)

    # The result's file URL serves the image itself.
    img = requests.get(search_service.url + results[0]["url"], timeout=10)
    assert img.status_code == 200
    assert img.content == query.read_bytes()

    stats = requests.get(f"{search_service.url}/v1/stats", timeout=10).json()
    assert stats["count"] == len(list(image_root.iterdir()))
