"""The bench still works end to end: one small scenario, two named contenders (sessions on and off), the
session oracle and the oracle in one run, every part a process of its own.

The scenario is the joins one, small (4 pods wired at once, then one join), so it covers both ways pods
arrive. Asserts nothing about speed; only that every contestant wired the pods as the kernel says, that the
sandbox counted the oracle's minimal exec set exactly (2 per pod of the first four: setup and release in
one exec, one fdb batch; for the join 2 into the newcomer and one append in each member) and the session
oracle's (2 per pod: setup and release, the session; none into the members for the join), that the
poller's view matched a fresh dump, that each part ran in a process of its own, and that nothing was left
behind (root only).
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


def test_a_join_into_four_wires_for_two_contenders_and_both_oracles_in_one_run_in_separate_processes(tmp_path):
    bench = subprocess.run(
        [sys.executable, "-m", "bench", "--scenarios", "joins", "--joins-into", str(PODS), "--joins", "1",
         "--contender", "first={default}", "--contender", "second={default} --sessions off",
         "--session-oracle", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert bench.returncode == 0, bench.stdout + bench.stderr
    header, _, first_row, *_ = bench.stdout.splitlines()
    assert header.split()[-4:] == ["first", "second", "session-oracle", "oracle"]
    assert first_row.startswith("joins 4→5, one at a time") and "join p50" in first_row
    assert "per join: newcomer / members" in bench.stdout
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["contestants"] == ["first", "second", "session-oracle", "oracle"]
    [scenario] = doc["scenarios"]
    first, second, session_oracle, oracle = (scenario["runs"][name] for name in doc["contestants"])
    assert second["command"][-2:] == ["--sessions", "off"]
    for run in (first, second, session_oracle, oracle):
        assert run["converged"] and run["per_join"]["n"] == 1, run
        assert run["timeline"][-1][1:] == [PODS, PODS]
        assert run["poller"]["verified"] == PODS and run["poller"]["mismatched"] == 0
        assert len({os.getpid(), run["pid"], run["sandbox_pid"], run["poller"]["pid"]}) == 4
    [join] = oracle["joins"]
    assert (join["execs"], join["execs_newcomer"], join["execs_members"]) == (2 + PODS - 1, 2, PODS - 1)
    assert oracle["execs_total"] == 2 * (PODS - 1) + join["execs"]
    # the session oracle: the members' sessions are open since their first batch
    [join] = session_oracle["joins"]
    assert (join["execs_newcomer"], join["execs_members"]) == (2, 0)
    assert session_oracle["execs_total"] == 2 * PODS
    for contender in (first, second):
        assert contender["command"][:2] == ["kube-vxlan-controller", "run"]
        # at least the newcomer's setup (with the release, in one exec since issue 10) and its fdb batch
        [join] = contender["joins"]
        assert join["execs_newcomer"] >= 2 and join["execs"] == join["execs_newcomer"] + join["execs_members"]
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    for run in (first, second, session_oracle, oracle):
        assert f"kvcsb-{run['sandbox_pid']}-" not in left
