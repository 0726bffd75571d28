"""The bench still works end to end: one small scenario, two named contenders and the oracle in one run, every
part a process of its own.

Asserts nothing about speed; only that every contestant wired the pods as the kernel says, that the sandbox
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


def test_burst_of_five_wires_for_two_contenders_and_the_oracle_in_one_run_in_separate_processes(tmp_path):
    bench = subprocess.run(
        [sys.executable, "-m", "bench", "--scenarios", "burst", "--burst-pods", str(PODS), "--burst-latencies", "0",
         "--contender", "first={default}", "--contender", "second={default} --coalesce 0.2",
         "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert bench.returncode == 0, bench.stdout + bench.stderr
    header, _, first_row, *_ = bench.stdout.splitlines()
    assert header.split()[-3:] == ["first", "second", "oracle"]
    assert first_row.startswith("burst 0→5, 0 ms") and "wired in" in first_row
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["contestants"] == ["first", "second", "oracle"]
    [scenario] = doc["scenarios"]
    first, second, oracle = (scenario["runs"][name] for name in doc["contestants"])
    assert second["command"][-2:] == ["--coalesce", "0.2"]
    for run in (first, second, oracle):
        assert run["converged"] and run["seconds"] is not None, run
        assert run["timeline"][-1][1:] == [PODS, PODS]
        assert run["poller"]["verified"] == PODS and run["poller"]["mismatched"] == 0
        assert len({os.getpid(), run["pid"], run["sandbox_pid"], run["poller"]["pid"]}) == 4
    assert oracle["execs"] == oracle["execs_total"] == 2 * PODS
    for contender in (first, second):
        assert contender["command"][:2] == ["kube-vxlan-controller", "run"]
        # at least a setup (with the release, in one exec since issue 10) and an fdb batch per pod
        assert contender["execs"] >= 2 * PODS
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    for run in (first, second, oracle):
        assert f"kvcsb-{run['sandbox_pid']}-" not in left
