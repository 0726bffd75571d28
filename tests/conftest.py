import os

import pykka
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "root: needs root (network namespaces); skipped otherwise")


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: creates network namespaces (CI runs as root)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _stop_all_actors():
    """Actor threads are not daemons: a leaked one would hang pytest at exit."""
    yield
    pykka.ActorRegistry.stop_all()


@pytest.fixture
def sandbox(tmp_path):
    """A fresh sandbox cluster for one test: API on a free loopback port, kubeconfig in tmp_path."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the sandbox's pods are network namespaces")
    from kvc_sandbox import Sandbox

    with Sandbox(workdir=tmp_path) as sb:
        yield sb
