"""Several contenders in one bench run (bench/contestants.py, bench/__main__.py, bench/report.py): how they are
named and started, how long the idle scenario watches each, the churn rates, and the table's one column per
contestant."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.__main__ import contenders, parser, rotated, scenarios
from bench.contestants import DEFAULT_CONTROLLER, DEFAULT_NAME, Contender, Oracle
from bench.report import rows, table
from bench.scenarios import Burst
from kube_vxlan_controller.settings import Settings


def chosen(*argv: str) -> list[Contender]:
    return contenders(parser().parse_args(list(argv)))


def test_without_flags_the_one_contender_is_this_controller():
    assert chosen() == [Contender(DEFAULT_CONTROLLER, DEFAULT_NAME)]


def test_controller_stays_the_single_contender_and_comes_before_named_ones():
    assert [c.name for c in chosen("--controller", "other run {kubeconfig}")] == [DEFAULT_NAME]
    assert [(c.name, c.template) for c in chosen("--controller", "x {kubeconfig}", "--contender", "b=y")] == [
        (DEFAULT_NAME, "x {kubeconfig}"), ("b", "y")]


def test_each_scenario_rotates_the_order_so_every_contestant_takes_every_place():
    orders = [rotated(["a", "b", "oracle"], i) for i in range(4)]
    assert orders == [["a", "b", "oracle"], ["b", "oracle", "a"], ["oracle", "a", "b"], ["a", "b", "oracle"]]


def test_named_contenders_keep_their_order_and_default_expands_to_the_default_template():
    on, off = chosen("--contender", "sessions-on={default} --sessions on",
                     "--contender", "sessions-off={default} --sessions off")
    assert (on.name, off.name) == ("sessions-on", "sessions-off")
    argv = on.argv(Path("/k"), None)
    assert argv[:4] == ["kube-vxlan-controller", "run", "--kubeconfig", "/k"]
    assert argv[-2:] == ["--sessions", "on"] and "" in argv  # --admin '' survives the shell-like split


@pytest.mark.parametrize("argv, complaint", [
    (["--contender", "no-template"], "NAME=TEMPLATE"),
    (["--contender", "a b=x"], "a name is"),
    (["--contender", "oracle=x"], "a name is"),
    (["--contender", "session-oracle=x"], "a name is"),
    (["--contender", "a=x", "--contender", "a=y"], "must differ"),
    (["--controller", "x", "--contender", f"{DEFAULT_NAME}=y"], "must differ"),
])
def test_bad_or_repeated_names_are_refused_before_anything_starts(argv, complaint):
    with pytest.raises(SystemExit, match=complaint):
        chosen(*argv)


def test_the_idle_window_is_each_contenders_own_resync_and_the_oracle_has_none():
    assert Contender().resync == Settings.resync
    assert Contender("{default} --resync 60").resync == 60
    assert Contender("{default} --resync=90").resync == 90
    assert Oracle().resync is None and Oracle(sessions=True).resync is None


def test_the_session_oracle_is_the_oracle_asked_to_keep_sessions():
    assert (Oracle().name, Oracle(sessions=True).name) == ("oracle", "session-oracle")
    scenario = Burst(5)
    assert "--sessions" not in Oracle().argv(Path("/k"), scenario)
    assert Oracle(sessions=True).argv(Path("/k"), scenario)[-1] == "--sessions"


def test_the_table_has_a_column_per_contestant_with_ratios_to_the_oracle():
    runs = {"on": {"seconds": 2.0, "running_seconds": 1.5, "machine_cpu_seconds": 3.0, "execs": 10, "pods": 5,
                   "rss_max_mb": 60.0},
            "off": {"seconds": 3.0, "running_seconds": 1.5, "machine_cpu_seconds": 4.0, "execs": 20, "pods": 5,
                    "rss_max_mb": 61.0},
            "oracle": {"seconds": 1.0, "running_seconds": 0.5, "machine_cpu_seconds": 2.0, "execs": 10, "pods": 5,
                       "rss_max_mb": 50.0}}
    doc = {"contestants": ["on", "off", "oracle"], "contenders": {"on": "a", "off": "b"},
           "scenarios": [{"kind": "burst", "name": "burst 0→5, 0 ms", "minimal": "10", "runs": runs}]}
    header, _, wired, running, cpu, execs, rss, *_ = table(doc).splitlines()
    assert header.split()[-3:] == ["on", "off", "oracle"]
    assert wired.split("  ")[0] == "burst 0→5, 0 ms"
    assert "2.00s (2.0)" in wired and "3.00s (3.0)" in wired and wired.rstrip().endswith("1.00s")
    assert "1.50s (3.0)" in running and "3.00s (1.5)" in cpu and cpu.rstrip().endswith("2.00s")
    assert "10 (2.0)" in execs and "20 (4.0)" in execs
    assert rss.split()[-3:] == ["60", "61", "50"]


def test_the_idle_rows_show_each_contenders_window_and_the_execs_open_at_its_end_and_at_most():
    steady = {"seconds": 300.0, "cpu_percent": 4.4, "execs": 1000, "rss_max_mb": 142.0,
              "open_execs_start": 1000, "open_execs_end": 1000, "open_execs_peak": 1003}
    runs = {"on": {"seconds": 90.0, "execs": 2000, "pods": 1000, "steady": steady},
            "oracle": {"seconds": 97.0, "execs": 2000, "pods": 1000,
                       "steady": {**steady, "seconds": 10.0, "cpu_percent": 0.0, "open_execs_end": 0}}}
    scenario = {"kind": "idle", "name": "idle 1000 pods, 10 nets", "minimal": "2000", "runs": runs}
    figures = {label: cells for _, label, *cells in rows(scenario, ["on", "oracle"])}
    assert figures["wired in (T/T_min)"] == ["90.00s (0.9)", "97.00s"]
    assert figures["steady CPU / window"] == ["4.40% / 300s", "0.00% / 10s"]
    assert figures["open execs end / peak"] == ["1000 / 1003", "0 / 1003"]


def test_churn_runs_once_per_asked_rate_the_default_and_twice_it():
    churns = scenarios(parser().parse_args(["--scenarios", "churn"]))
    assert [c.rate for c in churns] == [20.0, 40.0]
    assert len({c.name for c in churns}) == 2
    assert [c.rate for c in scenarios(parser().parse_args(["--scenarios", "churn", "--churn-rates", "5"]))] == [5.0]
