"""The sandbox's runtimes for tests: whether one can run here, a sandbox on it that leaves nothing behind,
and what Docker objects this test process's sandboxes still hold (imported as `runtimes`)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

RUNTIMES = ("netns", "docker")
#: the label every Docker object of a docker-runtime sandbox carries: `kvcsb=<pid>-<tag>`
LABEL = "kvcsb"


def unavailable(runtime: str) -> str | None:
    """Why `runtime` cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root: the sandbox's pods are network namespaces or containers it runs commands in as root"
    if runtime == "docker":
        from kvc_sandbox.dockerruntime import DockerRuntime
        from kvc_sandbox.runtime import RuntimeUnavailable

        try:
            DockerRuntime().preflight()
        except RuntimeUnavailable as exc:
            return str(exc)
    return None


def missing_images(images: list[str]) -> list[str]:
    """Those of `images` that are not on this machine (`make images` builds them)."""
    return [image for image in images
            if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0]


def require(runtime: str) -> None:
    """Skip the test, saying why, when `runtime` cannot run here."""
    reason = unavailable(runtime)
    if reason is not None:
        print(f"skipping ({runtime} runtime): {reason}")
        pytest.skip(f"{runtime} runtime: {reason}")


def docker_client():
    """docker-py's client of the local engine, closed on leaving the `with`."""
    import docker

    return contextlib.closing(docker.from_env())


def docker_containers(label: str) -> list[dict]:
    """What the engine's inspect says of each container carrying `label` (`key` or `key=value`), oldest
    first; those removed while listing are left out (the sandbox removes containers as it goes)."""
    import docker

    found = []
    with docker_client() as client:
        for listed in client.api.containers(all=True, filters={"label": label}):
            try:
                found.append(client.api.inspect_container(listed["Id"]))
            except docker.errors.NotFound:
                continue
    return sorted(found, key=lambda c: c["Created"])


def docker_leftovers(prefix: str = f"{os.getpid()}-") -> list[str]:
    """Containers and networks whose sandbox label starts with `prefix` (default: any sandbox this test
    process started), as `container NAME` / `network NAME`."""
    with docker_client() as client:
        found = [f"container {c['Names'][0]}" for c in client.api.containers(all=True, filters={"label": LABEL})
                 if c["Labels"][LABEL].startswith(prefix)]
        found += [f"network {n['Name']}" for n in client.api.networks(filters={"label": LABEL})
                  if n["Labels"][LABEL].startswith(prefix)]
    return found


def sandbox_on(runtime: str, tmp_path: Path, **options) -> Iterator:
    """For fixtures (`yield from`): a started sandbox on `runtime`, stopped afterwards; on docker, then
    checked to have left no container or network, also when the test failed."""
    require(runtime)
    from kvc_sandbox import Sandbox

    sandbox = Sandbox(workdir=tmp_path, runtime=runtime, **options)
    try:
        with sandbox:
            yield sandbox
    finally:
        if runtime == "docker" and sandbox.runtime is not None:
            assert docker_leftovers(f"{sandbox.runtime.instance}") == [], "the sandbox left Docker objects behind"
