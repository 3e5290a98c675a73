"""One set of Milvus settings: deploy/milvus/user.yaml is what make run renders, compose mounts and the
benchmarks run on."""

from __future__ import annotations

import pytest
import yaml

from devstack.milvus_settings import PRODUCT_SETTINGS, apply_product_settings, product_settings
from devstack.processes import REPO


def test_settings_merge_into_the_template_keeping_everything_else():
    template = "dataCoord:\n  segment:\n    maxSize: 512 # MB\n    sealProportion: 0.23\n  other: 1\nproxy:\n  port: 1\n"
    merged = yaml.safe_load(apply_product_settings(template))
    want = product_settings()["dataCoord"]["segment"]
    assert merged["dataCoord"]["segment"] == {**{"maxSize": 512, "sealProportion": 0.23}, **want}
    assert merged["dataCoord"]["other"] == 1 and merged["proxy"] == {"port": 1}


def test_compose_mounts_the_same_file_as_milvus_user_yaml():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["services"]["milvus"]["volumes"]
    assert f"./{PRODUCT_SETTINGS.relative_to(REPO)}:/milvus/configs/user.yaml:ro" in mounts


@pytest.mark.integration
def test_the_running_server_has_the_product_settings(milvus_server):
    rendered = yaml.safe_load((milvus_server.data_dir / "configs" / "milvus.yaml").read_text())
    for key, value in product_settings()["dataCoord"]["segment"].items():
        assert rendered["dataCoord"]["segment"][key] == value


def test_mmap_stays_off_and_a_set_one_goes_under_make_runs_own_data_folder(tmp_path):
    """queryNode.mmapDirPath: off in the product (2.3.5 loses names under it: deploy/milvus/user.yaml); a
    user's setting on the compose volume or relative goes under make run's data folder."""
    assert "mmapDirPath" not in (product_settings().get("queryNode") or {})
    template = "queryNode:\n  enableDisk: false\n"
    for path in ("/var/lib/milvus/mmap", "mmap"):
        rendered = yaml.safe_load(apply_product_settings(template, {"queryNode.mmapDirPath": path}, tmp_path))
        assert rendered["queryNode"] == {"enableDisk": False, "mmapDirPath": str(tmp_path / "mmap")}
    off = yaml.safe_load(apply_product_settings(template, {"queryNode.mmapDirPath": ""}, tmp_path))
    assert off["queryNode"]["mmapDirPath"] == ""
