"""Fixtures for the unit tests: a running scheduler for the actors, stopped afterwards; a scratch network
namespace for the agent's commands (root)."""

import os
import subprocess

import pytest

from kube_vxlan_controller.runtime.scheduler import Scheduler


@pytest.fixture
def scheduler():
    s = Scheduler().start()
    yield s
    s.stop()


@pytest.fixture
def netns():
    """A throw-away network namespace with an `eth0` underlay (a veth whose peer stays inside)."""
    name = f"kvc-scratch-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        def run(argv, stdin=None, check=True):
            done = subprocess.run(["ip", "netns", "exec", name, *argv], input=stdin, capture_output=True,
                                  text=True, timeout=30)
            if check:
                assert done.returncode == 0, (argv, stdin, done.stdout, done.stderr)
            return done

        run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0"])
        run(["ip", "addr", "add", "10.0.0.1/24", "dev", "eth0"])
        run(["ip", "addr", "add", "fd10::1/64", "dev", "eth0", "nodad"])
        run(["ip", "link", "set", "eth0", "up"])
        run(["ip", "link", "set", "peer0", "up"])
        yield run
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
