"""files.py: the only mapping from image names to paths under IMAGE_ROOT."""

from __future__ import annotations

import os

import pytest

from search_service.files import BadName, ImageFiles, check_name, file_url, sniff_mimetype


@pytest.mark.parametrize("name", ["a.jpg", "cats/1.jpg", "deep/er/x y.png", "été/ü.jpg", "a..b.jpg", ".hidden.jpg"])
def test_good_names_pass(name):
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name, words",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("/etc/passwd", "absolute"),
        ("../x.jpg", "'..'"),
        ("cats/../../x.jpg", "'..'"),
        ("cats//x.jpg", "empty"),
        ("./x.jpg", "'.'"),
        ("cats/", "empty"),
        ("a\x00b.jpg", "control"),
        ("a\nb.jpg", "control"),
        ("a\\b.jpg", "backslash"),
        ("x" * 1025, "1024"),
        ("d/" + "x" * 256, "255"),
    ],
)
def test_bad_names_say_why(name, words):
    with pytest.raises(BadName, match=words.replace(".", r"\.").replace("(", r"\(")):
        check_name(name)


def test_find_returns_files_inside_the_root_only(tmp_path):
    root = tmp_path / "root"
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "1.jpg").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("secret")
    files = ImageFiles(root)
    assert files.find("cats/1.jpg") == (root / "cats" / "1.jpg").resolve()
    assert files.find("cats/2.jpg") is None
    assert files.find("cats") is None  # a folder is not an image
    assert files.find("../secret.txt") is None
    assert files.find(str(tmp_path / "secret.txt")) is None
    assert files.find("cats/1.jpg\x00") is None


def test_symlinks_that_escape_the_root_are_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.jpg").write_bytes(b"secret")
    os.symlink(tmp_path / "outside" / "secret.jpg", root / "link.jpg")
    os.symlink(tmp_path / "outside", root / "linkdir")
    (root / "real.jpg").write_bytes(b"ok")
    os.symlink(root / "real.jpg", root / "inner-link.jpg")
    files = ImageFiles(root)
    assert files.find("link.jpg") is None
    assert files.find("linkdir/secret.jpg") is None
    assert files.find("inner-link.jpg") is not None  # a link that stays inside is fine
    with pytest.raises(BadName, match="outside"):
        files.stage("linkdir/new.jpg", b"data")
    with pytest.raises(BadName, match="outside"):
        files.stage("linkdir/sub/new.jpg", b"data")  # no folder is created outside either
    assert not (tmp_path / "outside" / "new.jpg").exists()
    assert list((tmp_path / "outside").iterdir()) == [tmp_path / "outside" / "secret.jpg"]


def test_stage_commit_discard_and_remove(tmp_path):
    files = ImageFiles(tmp_path / "root")
    staged = files.stage("cats/1.jpg", b"one")
    assert files.find("cats/1.jpg") is None  # not visible until committed
    files.commit(staged, "cats/1.jpg")
    assert files.find("cats/1.jpg").read_bytes() == b"one"
    files.commit(files.stage("cats/1.jpg", b"two"), "cats/1.jpg")
    assert files.find("cats/1.jpg").read_bytes() == b"two"
    files.discard(files.stage("cats/2.jpg", b"never"))
    assert sorted(p.name for p in (tmp_path / "root" / "cats").iterdir()) == ["1.jpg"]
    assert files.remove("cats/1.jpg") is True
    assert files.remove("cats/1.jpg") is False
    assert files.remove("../../etc/passwd") is False


def test_remove_deletes_a_link_never_its_target(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "real.jpg").write_bytes(b"ok")
    (tmp_path / "outside.jpg").write_bytes(b"keep")
    (tmp_path / "outdir").mkdir()
    (tmp_path / "outdir" / "x.jpg").write_bytes(b"keep")
    os.symlink(root / "real.jpg", root / "alias.jpg")
    os.symlink(tmp_path / "outside.jpg", root / "out.jpg")
    os.symlink(tmp_path / "outdir", root / "outdir")
    files = ImageFiles(root)
    assert files.remove("alias.jpg") and files.remove("out.jpg")
    assert (root / "real.jpg").exists() and not os.path.lexists(root / "alias.jpg")
    assert (tmp_path / "outside.jpg").read_bytes() == b"keep" and not os.path.lexists(root / "out.jpg")
    assert files.remove("outdir/x.jpg") is False  # through a folder link out of the root: untouched
    assert (tmp_path / "outdir" / "x.jpg").exists()


def test_file_url_escapes_but_keeps_folders():
    assert file_url("cats/1.jpg") == "/v1/images/cats/1.jpg/file"
    assert file_url("a b#?%.jpg") == "/v1/images/a%20b%23%3F%25.jpg/file"


def test_sniff_mimetype():
    assert sniff_mimetype(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_mimetype(b"\x89PNG\r\n\x1a\nxxxx") == "image/png"
    assert sniff_mimetype(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_mimetype(b"<html><script>") is None
