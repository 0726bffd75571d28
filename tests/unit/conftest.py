"""Fixtures for the unit tests of actors: a running scheduler, stopped afterwards."""

import pytest

from kube_vxlan_controller.runtime.scheduler import Scheduler


@pytest.fixture
def scheduler():
    s = Scheduler().start()
    yield s
    s.stop()
