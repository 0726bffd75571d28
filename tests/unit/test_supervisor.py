"""Supervisor: it gives up (sets `fatal`) once failures exceed the restart budget."""

from __future__ import annotations

import threading

from polling import wait_for

from kube_vxlan_controller.actors.supervisor import Supervisor
from kube_vxlan_controller.messages import ChildFailed


def test_supervisor_gives_up_after_the_restart_budget(scheduler):
    fatal = threading.Event()
    starts = []
    sup = Supervisor.start(scheduler=scheduler, start_watcher=lambda supervisor: starts.append(1) or None, fatal=fatal)
    sup.proxy().start_children().get(timeout=5)
    for i in range(5):
        sup.tell(ChildFailed("pod", f"u{i}", "boom"))
    sup.proxy().current_watcher().get(timeout=5)
    assert not fatal.is_set()
    sup.tell(ChildFailed("pod", "u6", "boom"))
    wait_for(fatal.is_set, what="fatal after 6 failures in 10 s")
