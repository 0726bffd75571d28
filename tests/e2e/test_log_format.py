"""`--log-format json` on a controller that wires pods: every line one JSON object, the pod and the network of
the lines about them as fields of their own (root)."""

from __future__ import annotations

import json
import signal

import pytest

from .conftest import Cluster
from polling import wait_for

pytestmark = pytest.mark.root

NET = "vxeth0"


def test_json_logs_name_the_pod_and_network_of_each_line(cluster: Cluster, controller_process):
    proc = controller_process("--log-format", "json")
    cluster.create_deployment("j", NET, replicas=2)
    pods = wait_for(lambda: len(cluster.running("run=j")) == 2 and cluster.running("run=j"), what="2 pods running")
    wait_for(lambda: cluster.wired(pods, NET), what="2 pods wired")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    with open(proc.log_path) as log:
        records = [json.loads(line) for line in log]
    assert all({"time", "level", "pod", "network", "message"} <= record.keys() for record in records)
    names = {f"default/{p.metadata.name}" for p in pods}
    fdb = [r for r in records if r["pod"] in names and r["network"] == NET and "fdb +=" in r["message"]]
    assert {r["pod"] for r in fdb} == names, records
    joined = [r for r in records if r["network"] == NET and r["pod"] in names and "joined" in r["message"]]
    assert {r["pod"] for r in joined} == names, records
    assert any(r["message"].startswith("Watching pods (selector: vxlan.openvnf.org)") and r["pod"] is None
               for r in records)
    for record in fdb[:1] + joined[:1]:
        print(json.dumps(record))
