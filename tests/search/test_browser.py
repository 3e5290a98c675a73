"""The web page in a real headless browser (Debian's chromium via Playwright) against the real stack."""

from __future__ import annotations

import json
import os
import re
import shutil
from urllib.parse import urlparse

import pytest

from tests.search.conftest import photo_files

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium; never downloads one. Missing chromium fails the test (CI must run it)."""
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.fail("chromium is missing: install Debian's package (sudo apt-get install chromium, or make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
                               args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page_for(browser, tmp_path):
    """Open a page on a service; records every request that leaves the service's origin."""
    contexts = []

    def _open(base_url: str, before_load=None, **context_args):
        ctx = browser.new_context(**context_args)
        contexts.append(ctx)
        page = ctx.new_page()
        if before_load is not None:  # e.g. routes that must be in place before the page's first requests
            before_load(page)
        page.foreign = []
        origin = urlparse(base_url).netloc
        page.on("request", lambda req: None if urlparse(req.url).netloc == origin or req.url.startswith(("data:", "blob:"))
                else page.foreign.append(req.url))
        page.goto(base_url + "/")
        return page

    yield _open
    for ctx in contexts:
        ctx.close()


def first_result(page) -> tuple[str, float]:
    card = page.locator("#results li").first
    score = float(re.search(r"[-\d.]+", card.locator(".score").inner_text()).group())
    return card.locator(".name").inner_text(), score


def test_choose_a_picture_then_click_a_result(page_for, search_service, photo_catalogue, sample_photos, tmp_path):
    page = page_for(search_service.url)
    photo = photo_files(sample_photos)[0]
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#results li")
    name, score = first_result(page)
    assert name == photo.name and score >= 0.99
    assert page.locator("#preview").is_visible()
    assert page.locator("#results li img").first.evaluate("img => img.complete && img.naturalWidth > 0")
    page.screenshot(path=str(tmp_path / "search.png"), full_page=True)

    # Clicking another result searches by it: it comes back first.
    second = page.locator("#results li .name").nth(1).inner_text()
    page.locator("#results li button").nth(1).click()
    page.wait_for_function("n => document.querySelector('#results li .name')?.textContent === n", arg=second)
    assert first_result(page)[1] >= 0.99
    page.wait_for_function("() => /\\d+ pictures in the catalogue/.test(document.getElementById('stats').textContent)")
    assert page.foreign == [], "the page must work offline (no requests to other origins)"


def test_drop_and_paste_search(page_for, search_service, photo_catalogue):
    page = page_for(search_service.url)
    target = photo_catalogue[2]
    for event in ("drop", "paste"):
        page.evaluate(
            """async ([name, kind]) => {
                const blob = await (await fetch('/v1/images/' + encodeURIComponent(name) + '/file')).blob();
                const dt = new DataTransfer();
                dt.items.add(new File([blob], name, {type: 'image/jpeg'}));
                if (kind === 'drop') {
                    document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
                } else {
                    document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true}));
                }
            }""",
            [target, event],
        )
        page.wait_for_function("n => document.querySelector('#results li .name')?.textContent === n", arg=target)
        assert first_result(page)[1] >= 0.99, event
        page.evaluate("document.getElementById('results').replaceChildren()")


def test_phone_sized_screen(page_for, search_service, photo_catalogue, sample_photos, tmp_path):
    page = page_for(search_service.url, viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    page.set_input_files("#file", str(photo_files(sample_photos)[3]))
    page.wait_for_selector("#results li")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "no sideways scrolling on a phone"
    box = page.locator("#results li").first.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 375
    assert page.locator("label[for=file]").is_visible()
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)


def test_bad_file_shows_the_extractors_message(page_for, search_service, photo_catalogue, tmp_path):
    page = page_for(search_service.url)
    bad = tmp_path / "notes.jpg"
    bad.write_text("these are notes, not a picture")
    page.set_input_files("#file", str(bad))
    message = page.locator("#message.error")
    message.wait_for()
    text = message.inner_text()
    assert text and "HTTP" not in text and "Traceback" not in text
    assert page.locator("#results li").count() == 0
    page.wait_for_function("() => document.getElementById('preview').hidden")  # no broken-image icon
    page.screenshot(path=str(tmp_path / "error.png"))


def test_empty_catalogue_message(page_for, start_search_service, sample_photos, tmp_path):
    svc = start_search_service()
    page = page_for(svc.url)
    page.wait_for_selector("#message.info")
    assert "catalogue is empty" in page.locator("#message").inner_text()
    page.set_input_files("#file", str(photo_files(sample_photos)[0]))
    page.wait_for_function("() => !document.querySelector('#message').textContent.startsWith('Searching')")
    assert "catalogue is empty" in page.locator("#message").inner_text()
    assert page.locator("#results li").count() == 0
    page.screenshot(path=str(tmp_path / "empty.png"))


def test_unreachable_database_message(page_for, start_search_service, tmp_path):
    from devstack.processes import free_port

    svc = start_search_service(MILVUS_URI=f"http://127.0.0.1:{free_port()}", MILVUS_TIMEOUT="2")
    page = page_for(svc.url)
    message = page.locator("#message.error")
    message.wait_for(timeout=30000)
    assert "unavailable" in message.inner_text()


@pytest.mark.parametrize("count_arrives", ["first", "after the results"])
def test_no_show_more_once_the_whole_catalogue_is_shown(page_for, start_search_service, sample_photos,
                                                        count_arrives):
    """Five pictures, five results a page: the first page is everything, so no "Show more" to an empty page;
    also when the catalogue's count (/v1/stats) answers after the search does."""
    import requests

    svc = start_search_service()
    photos = photo_files(sample_photos)[:5]
    for photo in photos:
        resp = requests.post(svc.url + "/v1/images", files={"image": (photo.name, photo.read_bytes())},
                             data={"name": photo.name}, timeout=120)
        assert resp.status_code == 201, resp.text
    held = []
    late = count_arrives != "first"
    page = page_for(svc.url, before_load=(lambda p: p.route("**/v1/stats", lambda route: held.append(route)))
                    if late else None)
    page.select_option("#top-k", "5")
    if not late:
        page.wait_for_function("() => /5 pictures/.test(document.getElementById('stats').textContent)")
    page.set_input_files("#file", str(photos[2]))
    page.wait_for_function("() => document.querySelectorAll('#results li').length === 5")
    assert first_result(page)[0] == photos[2].name
    if late:
        assert len(held) == 1 and page.locator("#more").is_visible()  # a full page, the count not known yet
        held[0].continue_()
        page.wait_for_function("() => /5 pictures/.test(document.getElementById('stats').textContent)")
    assert page.locator("#more").is_hidden()


def test_filters_more_results_and_near_duplicates(page_for, start_search_service, milvus_server, extractor_service,
                                                  sample_photos, tmp_path):
    """A shop-like catalogue with a declared field: the filter box narrows the results, "Show more" pages,
    and the near-duplicate view shows a copied photo beside its original."""
    import uuid

    import requests

    from catalog import Catalog

    collection = "shop_" + uuid.uuid4().hex[:8]
    info = requests.get(extractor_service.url + "/v1/info", timeout=10).json()
    cat = Catalog(milvus_server.uri, collection=collection)
    cat.ensure(info["dim"], info["fingerprint"], scalar_fields={"colour": "str"})
    cat.close()
    svc = start_search_service(COLLECTION=collection)
    photos = photo_files(sample_photos)[:8]
    for i, photo in enumerate(photos):
        resp = requests.post(svc.url + "/v1/images", files={"image": (photo.name, photo.read_bytes())},
                             data={"name": photo.name, "meta": json.dumps({"colour": "red" if i % 2 else "blue"})},
                             timeout=120)
        assert resp.status_code == 201, resp.text
    copy = requests.post(svc.url + "/v1/images", files={"image": ("copy.jpg", photos[0].read_bytes())},
                         data={"name": "copy of " + photos[0].name, "meta": '{"colour": "blue"}'}, timeout=120)
    assert copy.status_code == 201

    page = page_for(svc.url)
    page.wait_for_selector("#filters:not([hidden]) input[data-field=colour]")
    page.select_option("#top-k", "5")
    page.set_input_files("#file", str(photos[1]))
    page.wait_for_function("() => document.querySelectorAll('#results li').length === 5")
    assert page.locator("#more").is_visible()
    page.locator("#more").click()
    page.wait_for_function("() => document.querySelectorAll('#results li').length === 9")
    names = page.locator("#results li .name").all_inner_texts()
    assert len(set(names)) == 9 and page.locator("#more").is_hidden()

    page.fill("input[data-field=colour]", "red")
    page.dispatch_event("input[data-field=colour]", "change")
    page.wait_for_function("() => document.querySelectorAll('#results li').length === 4")
    reds = {p.name for i, p in enumerate(photos) if i % 2}
    assert set(page.locator("#results li .name").all_inner_texts()) == reds
    assert page.locator("#results li .name").first.inner_text() == photos[1].name

    page.locator("#show-duplicates").click()
    page.select_option("#dup-threshold", "0.999")  # exact copies (the test extractor's hed-vgg16 scores photos alike)
    page.wait_for_function("() => document.querySelectorAll('#dup-groups .group').length === 1", timeout=60000)
    group = page.locator("#dup-groups .group").first.locator(".name").all_inner_texts()
    assert sorted(group) == sorted([photos[0].name, "copy of " + photos[0].name])
    page.screenshot(path=str(tmp_path / "features.png"), full_page=True)
    assert page.foreign == []
