"""Security of the real stack: Bearer token on writes, path traversal on the file
endpoint, upload limits, loopback-only listeners, IMAGE_ROOT never escaped, and Milvus filter expressions
never built from raw user text (on the real Milvus, plus a static check of the code)."""

from __future__ import annotations

import ast
import os
import uuid
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest
import requests

from tests.conftest import jpeg_bytes
from devstack.processes import REPO, ServiceProcess
from tests.reliability.conftest import TOKEN, _drop
from tests.reliability.corpus import _save, photo
from tests.reliability.helpers import assert_json_error, raw_request

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = b"TOP-SECRET-do-not-serve"
UPLOAD_LIMIT = 1_000_000


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> dict[str, Path]:
    """IMAGE_ROOT inside a folder that also holds a secret file, with links from the root to the outside."""
    base = tmp_path_factory.mktemp("secure")
    root, outside = base / "images", base / "outside"
    root.mkdir()
    outside.mkdir()
    (base / "secret.txt").write_bytes(SECRET)
    (outside / "secret.txt").write_bytes(SECRET)
    (root / "sub").mkdir()
    os.symlink(base / "secret.txt", root / "link.jpg")  # a file link out of the root
    os.symlink(outside, root / "outlink")  # a folder link out of the root
    return {"base": base, "root": root, "outside": outside}


@pytest.fixture(scope="module")
def secured(layout, milvus_server, extractor_service):
    """A search service with API_TOKEN set, a 1 MB upload limit, its own collection and IMAGE_ROOT."""
    svc = ServiceProcess("search_service", env={
        "MILVUS_URI": milvus_server.uri, "EXTRACTOR_URL": extractor_service.url,
        "COLLECTION": "sec_" + uuid.uuid4().hex[:10], "IMAGE_ROOT": str(layout["root"]),
        "API_TOKEN": TOKEN, "MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT), "GUARD_TTL": "0",
    }, log_path=layout["base"] / "search.log", ready_path="/healthz").start(timeout=60)
    yield svc
    svc.stop()
    _drop(milvus_server.uri, svc.env["COLLECTION"])


def outside_snapshot(layout) -> dict[str, bytes]:
    """Every file outside IMAGE_ROOT in the test's folder, with its bytes."""
    out = {}
    for dirpath, _, files in os.walk(layout["base"]):
        if Path(dirpath).is_relative_to(layout["root"]):
            continue
        for f in files:
            p = Path(dirpath) / f
            if p.suffix != ".log":
                out[str(p)] = p.read_bytes()
    return out


def add(url: str, name: str, data: bytes | None = None, headers: dict | None = AUTH) -> requests.Response:
    data = data if data is not None else _save(photo(), "JPEG")
    return requests.post(url + "/v1/images", files={"image": ("upload.jpg", data)}, data={"name": name},
                         headers=headers or {}, timeout=120)


def path_of(name: str) -> str:
    return "/v1/images/" + quote(name, safe="/")


def test_writes_need_the_bearer_token(secured, layout):
    url = secured.url
    before = outside_snapshot(layout)
    bad_headers = [None, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                   {"Authorization": TOKEN}, {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer "},
                   {"X-Api-Token": TOKEN}]
    for headers in bad_headers:
        resp = add(url, "guarded.jpg", headers=headers)
        assert_json_error(resp, [401], case=f"POST with {headers}")
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    # Refused before anything else: an unauthenticated client cannot make us decode its bytes either.
    assert_json_error(add(url, "guarded.jpg", b"not a picture", headers=None), [401], case="bad image, no token")
    assert not (layout["root"] / "guarded.jpg").exists()
    assert requests.get(url + "/v1/images/guarded.jpg", timeout=10).status_code == 404

    assert add(url, "guarded.jpg").status_code == 201
    for headers in bad_headers:
        resp = requests.delete(url + "/v1/images/guarded.jpg", headers=headers or {}, timeout=30)
        assert_json_error(resp, [401], case=f"DELETE with {headers}")
    assert (layout["root"] / "guarded.jpg").exists()
    # Reads need no token.
    assert requests.get(url + "/v1/images/guarded.jpg", timeout=10).status_code == 200
    assert requests.get(url + "/v1/images/guarded.jpg/file", timeout=10).status_code == 200
    assert requests.get(url + "/v1/stats", timeout=10).json()["count"] >= 1
    found = requests.post(url + "/v1/search", files={"image": ("q.jpg", _save(photo(), "JPEG"))}, timeout=60)
    assert found.status_code == 200 and found.json()["results"][0]["name"] == "guarded.jpg"
    assert requests.delete(url + "/v1/images/guarded.jpg", headers=AUTH, timeout=30).status_code == 200
    assert not (layout["root"] / "guarded.jpg").exists()
    assert outside_snapshot(layout) == before


def _traversals(layout) -> list[str]:
    secret = str(layout["base"] / "secret.txt")
    return [
        "/v1/images/../secret.txt/file",
        "/v1/images/%2e%2e/secret.txt/file",
        "/v1/images/%2E%2E%2Fsecret.txt/file",
        "/v1/images/..%2fsecret.txt/file",
        "/v1/images/.%2e/secret.txt/file",
        "/v1/images/%252e%252e%252fsecret.txt/file",  # double-encoded
        "/v1/images/..%5csecret.txt/file",  # backslash
        "/v1/images/..\\secret.txt/file",
        "/v1/images/%5c%5c..%5c..%5csecret.txt/file",
        "/v1/images/sub/../../secret.txt/file",
        "/v1/images/sub/%2e%2e/%2e%2e/secret.txt/file",
        "/v1/images/./../secret.txt/file",
        "/v1/images/....//secret.txt/file",
        "/v1/images/..%c0%af..%c0%afsecret.txt/file",  # overlong UTF-8 '/'
        "/v1/images/%ef%bc%8e%ef%bc%8e/secret.txt/file",  # full-width dots
        "/v1/images/..%00/secret.txt/file",
        "/v1/images/secret.txt%00.jpg/file",
        "/v1/images/" + quote(secret) + "/file",  # absolute path ('//' is merged by a redirect)
        "/v1/images/" + quote(secret, safe="") + "/file",
        "/v1/images/file:%2F%2F" + quote(secret, safe="") + "/file",
        "/v1/images/../../../../../../etc/passwd/file",
        "/v1/images/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd/file",
        "/v1/images/~/secret.txt/file",
        "/v1/images/link.jpg/file",  # a symlink inside the root pointing at the secret
        "/v1/images/outlink/secret.txt/file",  # a folder symlink leading out
        "/v1/images/victim.jpg/file",  # a catalogued image whose file became a link out
    ]


def _get_following_redirects(base: str, path: str, hops: int = 3) -> tuple[int, bytes, list[str]]:
    seen = []
    for _ in range(hops + 1):
        status, headers, body = raw_request(base, "GET", path)
        seen.append(f"{status} {path}")
        assert SECRET not in body, f"secret served for {seen}"
        if status in (301, 302, 303, 307, 308):
            location = headers["Location"]
            assert location.startswith(base) or location.startswith("/"), f"redirect off-site: {location}"
            path = location[len(base):] if location.startswith(base) else location
            continue
        return status, body, seen
    raise AssertionError(f"redirect loop: {seen}")


def test_path_traversal_on_the_file_endpoint_is_404(secured, layout):
    """At least 10 (here 26) traversal variants, sent byte for byte: each ends in a JSON 404, never the file."""
    assert add(secured.url, "victim.jpg").status_code == 201
    victim = layout["root"] / "victim.jpg"
    victim.unlink()
    os.symlink(layout["base"] / "secret.txt", victim)
    variants = _traversals(layout)
    assert len(variants) >= 10
    for path in variants:
        status, body, seen = _get_following_redirects(secured.url, path)
        assert status == 404, seen
        assert b'"not_found"' in body, seen
        meta_path = path[: -len("/file")]
        status, body, seen = _get_following_redirects(secured.url, meta_path)
        assert status == 404 or (status == 200 and meta_path.endswith("victim.jpg")), seen
    # A good file is still served, so the 404s above are not a broken endpoint.
    assert add(secured.url, "sub/good.jpg").status_code == 201
    assert requests.get(secured.url + "/v1/images/sub/good.jpg/file", timeout=10).status_code == 200


def test_image_root_is_never_escaped_by_writes_or_deletes(secured, layout):
    before = outside_snapshot(layout)
    for name in ("../escape.jpg", "sub/../../escape.jpg", str(layout["outside"] / "escape.jpg"), "..",
                 "sub/./x.jpg", "sub//x.jpg", "..\\escape.jpg"):
        assert_json_error(add(secured.url, name), [400], case=name)
    resp = requests.post(secured.url + "/v1/images", files={"image": ("../../escape.jpg", _save(photo(), "JPEG"))},
                         headers=AUTH, timeout=60)
    assert_json_error(resp, [400], case="file name with ..")
    # Deleting through a traversal finds nothing; deleting an image whose file is a link removes the link.
    for path in ("/v1/images/../secret.txt", "/v1/images/%2e%2e/secret.txt", "/v1/images/outlink/secret.txt"):
        status, _, _ = raw_request(secured.url, "DELETE", path, headers=AUTH)
        assert status == 404, path
    assert add(secured.url, "linked.jpg").status_code == 201
    (layout["root"] / "linked.jpg").unlink()
    os.symlink(layout["outside"] / "secret.txt", layout["root"] / "linked.jpg")
    assert requests.delete(secured.url + "/v1/images/linked.jpg", headers=AUTH, timeout=30).status_code == 200
    assert outside_snapshot(layout) == before


def test_a_name_through_a_folder_link_out_of_the_root_is_a_400(secured, layout):
    """Was a 500 (BadName from ImageFiles.stage unmapped); fixed in 85dbe05, kept as a guard."""
    before = outside_snapshot(layout)
    resp = add(secured.url, "outlink/evil.jpg")
    assert outside_snapshot(layout) == before  # never escaped, whatever the status
    assert_json_error(resp, [400], case="outlink/evil.jpg")


def test_uploads_over_the_limit_get_413_and_write_nothing(secured, layout):
    big = jpeg_bytes(__import__("numpy").random.default_rng(0).integers(0, 255, (900, 900, 3), dtype="uint8"),
                     quality=100)
    assert len(big) > UPLOAD_LIMIT
    err = assert_json_error(add(secured.url, "big.jpg", big), [413], case="POST /v1/images")
    assert str(UPLOAD_LIMIT) in err["message"]
    resp = requests.post(secured.url + "/v1/search", files={"image": ("big.jpg", big)}, timeout=60)
    assert_json_error(resp, [413], case="POST /v1/search")
    resp = requests.post(secured.url + "/v1/search", json={"vector": [0.5] * 200_000}, timeout=60)
    assert_json_error(resp, [413], case="JSON body")
    assert not (layout["root"] / "big.jpg").exists()
    assert requests.get(secured.url + "/v1/images/big.jpg", timeout=10).status_code == 404


def _listening(pids: list[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP socket these processes listen on, as the host sees them."""
    pids = set(pids)
    return [(c.laddr.ip, c.laddr.port, c.pid) for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.pid in pids]


def test_services_listen_on_loopback_only(extractor_service, search_service, secured):
    for svc in (extractor_service, search_service, secured):
        sockets = _listening(svc.pids)
        assert sockets, f"{svc.module} listens on nothing?"
        assert {ip for ip, _, _ in sockets} == {"127.0.0.1"}, f"{svc.module}: {sockets}"
        assert any(port == svc.port for _, port, _ in sockets)


def test_milvus_listens_on_loopback_only(milvus_server):
    pids = [milvus_server.proc.pid] + [c.pid for c in psutil.Process(milvus_server.proc.pid).children(recursive=True)]
    sockets = _listening(pids)
    public = [s for s in sockets if s[0] not in ("127.0.0.1", "::1")]
    on_port = [c for c in psutil.net_connections(kind="inet")
               if c.status == psutil.CONN_LISTEN and c.laddr.port == milvus_server.port]
    assert on_port and all(c.laddr.ip == "127.0.0.1" for c in on_port), on_port
    assert not public, (f"Milvus listens on non-loopback addresses {public} "
                        f"(isolate_network={getattr(milvus_server, 'isolate_network', None)})")


TRICKY_NAMES = [
    'q"uote.jpg', "s'ingle.jpg", '" or name != ".jpg', "') or true or ('.jpg", 'x" || name like "%',
    '"]) or (["', '" or "1"=="1', 'name in ["innocent-1.jpg"]', "%", "*.jpg", "$meta['x'].jpg",
    "a%2Fb.jpg", "sub/\" or true or \".jpg",
]
UNSTORED = ['" or name != "', '") or true or ("', '" || true || "', 'a\\"', '"', 'innocent-1.jpg" or "']


def test_names_never_reach_a_filter_raw(secured):
    """Names that would rewrite a spliced expression affect exactly their own row, through every endpoint."""
    url = secured.url

    def count() -> int:
        return requests.get(url + "/v1/stats", timeout=30).json()["count"]

    already = count() if requests.get(url + "/v1/stats", timeout=30).json()["exists"] else 0
    innocents = [f"innocent-{i}.jpg" for i in range(3)]
    for i, name in enumerate(innocents + TRICKY_NAMES):
        img = photo().rotate(7 * i)
        resp = add(url, name, _save(img, "JPEG"))
        assert resp.status_code in (200, 201), f"{name!r}: {resp.text}"
        assert resp.json()["name"] == name
    stored = already + len(innocents) + len(TRICKY_NAMES)
    assert count() == stored
    for name in TRICKY_NAMES:
        got = requests.get(url + path_of(name), timeout=30)
        assert got.status_code == 200 and got.json()["name"] == name, f"{name!r}: {got.text}"
        by_name = requests.post(url + "/v1/search", json={"name": name, "top_k": 1}, timeout=30)
        assert by_name.status_code == 200 and by_name.json()["results"][0]["name"] == name, name
    for name in UNSTORED:
        for method in ("GET", "DELETE"):
            resp = requests.request(method, url + "/v1/images/" + quote(name, safe=""), headers=AUTH, timeout=30)
            assert_json_error(resp, [404], case=f"{method} {name!r}")
        resp = requests.post(url + "/v1/search", json={"name": name}, timeout=30)
        assert_json_error(resp, [400, 404], case=f"search by {name!r}")
    assert count() == stored
    for n, name in enumerate(TRICKY_NAMES, start=1):
        resp = requests.delete(url + path_of(name), headers=AUTH, timeout=30)
        assert resp.status_code == 200 and resp.json()["name"] == name, f"{name!r}: {resp.text}"
        assert count() == stored - n, f"deleting {name!r} removed other rows"
    for name in innocents:
        assert requests.get(url + path_of(name), timeout=30).status_code == 200


FILTER_KEYWORDS = {"filter", "expr"}
# The only functions that may build an expression: each quotes and escapes every value it puts in.
SAFE_FILTER_BUILDERS = {"names_filter", "names_after", "to_expression", "keys_filter"}


def test_no_milvus_filter_is_built_from_text_in_the_code():
    """Static guard: every `filter=`/`expr=` passed in catalog/, search_service/ and loader/ is a string
    literal or built by one of SAFE_FILTER_BUILDERS (values quoted and escaped); and no Milvus call uses pymilvus's unescaped `ids=` path."""
    problems = []
    for package in ("catalog", "search_service", "loader"):
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                for kw in node.keywords:
                    where = f"{path.relative_to(REPO)}:{node.lineno}"
                    if kw.arg in FILTER_KEYWORDS:
                        v = kw.value
                        literal = isinstance(v, ast.Constant) and isinstance(v.value, str)
                        escaped = (isinstance(v, ast.Call) and isinstance(v.func, (ast.Name, ast.Attribute))
                                   and getattr(v.func, "id", getattr(v.func, "attr", "")) in SAFE_FILTER_BUILDERS)
                        if not (literal or escaped):
                            problems.append(f"{where}: {kw.arg}={ast.unparse(v)}")
                    if kw.arg == "ids":
                        problems.append(f"{where}: ids={ast.unparse(kw.value)} (pymilvus does not escape ids)")
    assert not problems, "filters built from text:\n" + "\n".join(problems)
