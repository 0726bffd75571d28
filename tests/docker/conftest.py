"""Fixtures for the docker runtime's own tests: `sandbox` is a docker-runtime sandbox (skipped, saying why,
when not root or no engine answers), and after every test no container or network of a sandbox this
process started is left, also after a failure."""

from __future__ import annotations

import pytest
from runtimes import docker_leftovers, sandbox_on, unavailable


@pytest.fixture
def sandbox(tmp_path):
    yield from sandbox_on("docker", tmp_path)


@pytest.fixture(autouse=True)
def _nothing_left_behind():
    yield
    if unavailable("docker") is None:
        assert docker_leftovers() == [], "a sandbox of this test left Docker objects behind"
