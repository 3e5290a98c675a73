"""The compose file is valid (checked by Debian's docker-compose) and every service it builds from this
repo runs a real entry point of this repo."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from devstack.processes import REPO
from tests.conftest import require_tool

COMPOSE = REPO / "docker-compose.yml"
OUR_MODULES = {"extractor_service", "search_service", "loader"}


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _docker_compose(tmp_path, *args: str, profiles: str = "gpu") -> subprocess.CompletedProcess:
    exe = require_tool("docker-compose", "apt-get install docker-compose")
    env_file = tmp_path / ".env"
    env_file.write_text((REPO / ".env.example").read_text())
    return subprocess.run(
        [exe, "--project-directory", str(REPO), "--env-file", str(env_file), "-f", str(COMPOSE), *args],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "COMPOSE_PROFILES": profiles},
    )


@pytest.mark.parametrize("profiles, extractor", [("gpu", "extractor"), ("cpu", "extractor-cpu")])
def test_docker_compose_config_is_valid(tmp_path, profiles, extractor):
    done = _docker_compose(tmp_path, "config", profiles=profiles)
    assert done.returncode == 0, done.stderr
    services = _docker_compose(tmp_path, "config", "--services", profiles=profiles).stdout.split()
    assert {"etcd", "minio", "milvus", "search", extractor} <= set(services)


def _module_of(command) -> str | None:
    words = command if isinstance(command, list) else str(command).split()
    if "-m" in words:
        return words[words.index("-m") + 1]
    return None


def test_every_built_service_runs_a_real_entry_point():
    services = _compose()["services"]
    built = {name: svc for name, svc in services.items() if "build" in svc}
    assert {"extractor", "extractor-cpu", "search", "loader"} <= set(built)
    for name, svc in built.items():
        dockerfile = REPO / svc["build"]["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
        module = _module_of(svc.get("entrypoint") or svc.get("command"))
        assert module in OUR_MODULES, f"{name}: runs {module!r}, not one of {OUR_MODULES}"
        assert (REPO / module / "__main__.py").is_file(), f"{name}: {module}/__main__.py is missing"
        text = dockerfile.read_text()
        for src in re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s", text, flags=re.M):
            assert (REPO / src).exists(), f"{dockerfile.name}: COPY {src} does not exist in the repo"
        cmd = re.findall(r"^(?:CMD|ENTRYPOINT)\s+(.+)$", text, flags=re.M)
        assert any(module in c for c in cmd), f"{dockerfile}: no CMD/ENTRYPOINT runs {module}"


def test_only_the_search_service_publishes_a_port():
    services = _compose()["services"]
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"search"}


def test_extractor_reserves_an_nvidia_gpu():
    devices = _compose()["services"]["extractor"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_env_example_documents_every_compose_variable():
    used = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE.read_text()))
    documented = set(re.findall(r"^([A-Z_]+)=", (REPO / ".env.example").read_text(), flags=re.M))
    assert used <= documented, f"undocumented in .env.example: {sorted(used - documented)}"
