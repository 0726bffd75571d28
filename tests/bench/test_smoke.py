"""The bench still works end to end: one small scenario, contender and oracle, every part a process of its own.

Asserts nothing about speed; only that both contestants wired the pods as the kernel says, that the sandbox
counted the oracle's minimal exec set exactly (2 per pod: setup and release in one exec, one fdb batch),
that the poller's view matched a fresh dump, that each part ran in a process of its own, and that nothing
was left behind (root only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
PODS = 5


def test_burst_of_five_wires_for_contender_and_oracle_in_separate_processes(tmp_path):
    bench = subprocess.run(
        [sys.executable, "-m", "bench", "--scenarios", "burst", "--burst-pods", str(PODS), "--burst-latencies", "0",
         "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bench.returncode == 0, bench.stdout + bench.stderr
    assert "burst 0→5, 0 ms" in bench.stdout and "wired in" in bench.stdout
    [scenario] = json.loads((tmp_path / "bench.json").read_text())["scenarios"]
    contender, oracle = scenario["contender"], scenario["oracle"]
    for run in (contender, oracle):
        assert run["converged"] and run["seconds"] is not None, run
        assert run["timeline"][-1][1:] == [PODS, PODS]
        assert run["poller"]["verified"] == PODS and run["poller"]["mismatched"] == 0
        assert len({os.getpid(), run["pid"], run["sandbox_pid"], run["poller"]["pid"]}) == 4
    assert contender["command"][:2] == ["kube-vxlan-controller", "run"]
    assert oracle["execs"] == oracle["execs_total"] == 2 * PODS
    # at least a setup (with the release, in one exec since issue 10) and an fdb batch per pod
    assert contender["execs"] >= 2 * PODS
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    for run in (contender, oracle):
        assert f"kvcsb-{run['sandbox_pid']}-" not in left
