"""The seed example (deploy/example.yaml) on the docker runtime — real images, busybox apps, the agent image
as init agent and sidecar — with the controller as a host process: a ↔ b ping through gw, every fdb
exact, read inside the containers, and gw (whose readiness is gated on vxlan.openvnf.org/Wired) Ready only
once wired."""

from __future__ import annotations

from pathlib import Path

import pytest
from apihelpers import AGENT_IMAGE
from polling import wait_for
from runtimes import missing_images
from seedexample import Cluster, Deployed, assert_ready_only_once_wired, pod_condition

from kube_vxlan_controller.controller import Controller
from kube_vxlan_controller.settings import Settings

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]


def test_seed_example_is_wired_and_pings_through_gw(sandbox, tmp_path):
    missing = missing_images([AGENT_IMAGE, "busybox:latest"])
    if missing:
        pytest.skip(f"image(s) {', '.join(missing)} not built: run `make images` (make test does, as root)")
    cluster = Cluster("sandbox-docker", sandbox.kubeconfig, tmp_path)
    cluster.kubectl("create", "-f", str(ROOT / "deploy" / "networks.yaml"))
    cluster.kubectl("create", "-f", str(ROOT / "deploy" / "example.yaml"))
    controller = Controller(Settings(kubeconfig=str(sandbox.kubeconfig), namespace="kube-system",
                                     admin="127.0.0.1:0", health="", log_level="WARNING")).start()
    try:
        example = Deployed(cluster)
        example.wait_exact("the seed example wired on the docker runtime")
        example.pings()
        for app in ("a", "b", "gw"):
            statuses = example.pod(app)["status"]["containerStatuses"]
            assert all(s["containerID"].startswith("docker://") for s in statuses), statuses
        wait_for(lambda: (p := example.pod("gw")) and example.ready(p) and p, timeout=30, what="gw Ready")
        # gw may have been Wired with 0/0 peers on vxeth1 before a joined; a change of the message alone
        # is written within the writer's interval (10 s per pod)
        wait_for(lambda: (c := pod_condition(example.pod("gw"))) and (c["status"], c["message"]) == (
                 "True", "vxeth1 1/1 peers, vxeth2 1/1"), timeout=30,
                 what="gw's Wired condition counting its peers")
        assert_ready_only_once_wired(sandbox.kubeconfig, "run=gw")
    finally:
        controller.stop()
