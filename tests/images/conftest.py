"""Fixtures for the tests of the images `make images` builds: a Docker engine, the image tags, and
containers started through testcontainers that are always removed.

testcontainers' reaper (ryuk) is a registry image that cannot be pulled here, so it is off; cleanup is
ours: every container these tests start carries the label `kvc-test=images` and is removed by the
fixture that started it, and `no_leftovers` checks after each test that none is left.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from imagetags import AGENT, CONTROLLER, LABEL

# before testcontainers is imported (by the test modules): its reaper image cannot be pulled here
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


def _engine_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def docker_client():
    if not _engine_answers():
        pytest.skip("no Docker engine answers (as root, `make test` installs and starts one)")
    import docker

    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="session")
def images(docker_client) -> dict[str, str]:
    """The tags of the controller and agent images; skips (saying why) when `make images` did not run."""
    missing = []
    for tag in (CONTROLLER, AGENT):
        try:
            docker_client.images.get(tag)
        except Exception:
            missing.append(tag)
    if missing:
        pytest.skip(f"image(s) {', '.join(missing)} not built: run `make images` (make test does, as root)")
    return {"controller": CONTROLLER, "agent": AGENT}


@pytest.fixture(autouse=True)
def no_leftovers(request):
    """After each test of this folder: no container with our label is left, whatever the test did."""
    yield
    if "docker_client" not in request.fixturenames:
        return
    client = request.getfixturevalue("docker_client")
    left = client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in LABEL.items()]})
    for container in left:
        container.remove(force=True)
    assert not left, f"containers left behind: {[c.name for c in left]}"
