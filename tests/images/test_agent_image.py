"""The agent image: its main process waits, ends with 0 on TERM (`docker stop`, `kill -TERM 1` in it) or
once /run/terminate exists, and it carries the tools the controller execs (ip, bridge, timeout, kill)."""

from __future__ import annotations

import time

from imagetags import LABEL
from polling import wait_for
from testcontainers.core.container import DockerContainer


def started(image: str) -> DockerContainer:
    c = DockerContainer(image, labels=LABEL).with_env("AGENT_POLL_SECONDS", "0.2")
    c.start()
    wrapped = c.get_wrapped_container()
    wait_for(lambda: "waiting for TERM" in wrapped.logs().decode(), timeout=20, what="the agent's first line")
    return c


def exit_code(c: DockerContainer) -> int:
    wrapped = c.get_wrapped_container()
    return wrapped.wait(timeout=30)["StatusCode"]


def test_tools_the_controller_execs_are_there(images):
    c = started(images["agent"])
    try:
        code, out = c.get_wrapped_container().exec_run(
            ["sh", "-c", "command -v ip bridge timeout kill && ip -V && timeout 5 bridge -j fdb show"])
        assert code == 0, out.decode()
    finally:
        c.stop()


def test_docker_stop_ends_it_with_0_at_once(images):
    c = started(images["agent"])
    try:
        wrapped = c.get_wrapped_container()
        began = time.monotonic()
        wrapped.stop(timeout=10)
        assert time.monotonic() - began < 5
        assert exit_code(c) == 0
        assert "got TERM, exiting" in wrapped.logs().decode()
    finally:
        c.stop()


def test_release_exec_ends_it_with_0(images):
    """The controller's release of the init agent, as one exec."""
    c = started(images["agent"])
    try:
        c.get_wrapped_container().exec_run(["sh", "-c", "touch /run/terminate; kill -TERM 1"])
        assert exit_code(c) == 0
    finally:
        c.stop()


def test_terminate_file_alone_ends_it_with_0(images):
    """What older controllers do."""
    c = started(images["agent"])
    try:
        c.get_wrapped_container().exec_run(["touch", "/run/terminate"])
        assert exit_code(c) == 0
        assert "/run/terminate appeared" in c.get_wrapped_container().logs().decode()
    finally:
        c.stop()
