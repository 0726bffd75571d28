"""Benchmarks side by side: contender controllers against the oracle (the minimal exec set), as root.

    .venv/bin/python -m bench [--controller TEMPLATE | --contender NAME=TEMPLATE …] [--session-oracle]
                              [--scenarios burst,joins,churn,idle] [--tls] [--out DIR]

Every scenario runs for each contender in the order given, then for the session oracle when asked for,
then for the oracle, each on a fresh sandbox and on the same sizes and rates, the order rotated by one
from each scenario to the next (`rotated`); the sandbox, the poller and
the contestant are processes of their own (see run.py). Prints a progress line every few seconds, then
the table on stdout (one column per contestant); writes DIR/bench.json (every figure, one entry per
contestant) and DIR/bench.png (one panel per scenario, when matplotlib is installed: the `bench` extra).
Asserts nothing about speed. `--keep-logs` keeps every process's log under DIR/logs; the sandbox logs at
WARNING unless `KVC_BENCH_SANDBOX_LOG` names another level (DEBUG: every exec, and how each stream ended).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from loguru import logger

from bench import report
from bench.contestants import DEFAULT_CONTROLLER, DEFAULT_NAME, SESSION_ORACLE, Contender, Oracle
from bench.run import Run
from bench.scenarios import Burst, Churn, Idle, Joins
from kube_vxlan_controller.settings import Settings

KINDS = ("burst", "joins", "churn", "idle")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--controller", metavar="TEMPLATE",
                   help=f"command template of the one contender, named {DEFAULT_NAME!r}; {{kubeconfig}} is "
                        f"replaced (default: {DEFAULT_CONTROLLER})")
    p.add_argument("--contender", action="append", default=[], metavar="NAME=TEMPLATE",
                   help="a named contender, again for more (after --controller's, if given); in TEMPLATE "
                        "{default} is the default command template, {kubeconfig} the sandbox's kubeconfig")
    p.add_argument("--session-oracle", action="store_true",
                   help=f"also measure the session oracle ({SESSION_ORACLE!r}: the oracle with each pod's fdb "
                        "batches over one long-lived exec), after the contenders")
    p.add_argument("--scenarios", default=",".join(KINDS), help="which, in order (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("bench/out"), help="where bench.json and bench.png go")
    p.add_argument("--burst-pods", type=_ints, default=[50, 200])
    p.add_argument("--burst-latencies", type=_ints, default=[0, 50], help="exec latency, milliseconds")
    p.add_argument("--joins-into", type=int, default=100)
    p.add_argument("--joins", type=int, default=20)
    p.add_argument("--churn-pods", type=int, default=200)
    p.add_argument("--churn-rates", type=_floats, default=[20.0, 40.0],
                   help="creations (and deletions) per second asked for, one churn scenario each: the default "
                        "rate and twice it (the sandbox paces them to what it achieves; default: %(default)s)")
    p.add_argument("--churn-seconds", type=float, default=60.0)
    p.add_argument("--idle-pods", type=int, default=1000)
    p.add_argument("--idle-networks", type=int, default=10)
    p.add_argument("--idle-seconds", type=float, default=None,
                   help="the steady window (default: each contender's --resync, or the controller's default "
                        f"{Settings.resync:g} s, so it holds each pod's periodic re-read once)")
    p.add_argument("--nodes", type=int, default=1,
                   help="sandbox nodes the pods spread over (VXLAN routed between them; default: %(default)s)")
    p.add_argument("--tls", action="store_true",
                   help="the sandbox serves HTTPS (its CA, bearer tokens), as a real cluster does, and every "
                        "contestant talks to it over HTTPS (default: plain HTTP on 127.0.0.1)")
    p.add_argument("--keep-logs", action="store_true", help="keep every process's log under OUT/logs")
    return p


def scenarios(args) -> list:
    chosen = []
    for kind in args.scenarios.split(","):
        if kind == "burst":
            chosen += [Burst(n, latency=ms / 1000) for n in args.burst_pods for ms in args.burst_latencies]
        elif kind == "joins":
            chosen.append(Joins(into=args.joins_into, joins=args.joins))
        elif kind == "churn":
            chosen += [Churn(pods=args.churn_pods, rate=rate, seconds=args.churn_seconds) for rate in args.churn_rates]
        elif kind == "idle":
            chosen.append(Idle(pods=args.idle_pods, networks=args.idle_networks, seconds=args.idle_seconds))
        else:
            raise SystemExit(f"unknown scenario {kind!r}: choose among {', '.join(KINDS)}")
    return chosen


def contenders(args) -> list[Contender]:
    """Who competes with the oracle, in order; SystemExit on a bad or repeated name."""
    try:
        chosen = [Contender.parse(text) for text in args.contender]
    except ValueError as error:
        raise SystemExit(f"--contender {error}") from None
    if args.controller is not None or not chosen:
        chosen.insert(0, Contender(args.controller or DEFAULT_CONTROLLER))
    names = [c.name for c in chosen]
    if len(set(names)) != len(names):
        raise SystemExit(f"contender names must differ: {', '.join(names)}")
    return chosen


def _terminate(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def rotated(contestants: list, by: int) -> list:
    """The contestants' order for the scenario at index `by`: the given order, rotated by `by`.

    A run's place in the order counts: on 2 cores, a controller ran a burst of 200 up to 1 s slower (of
    7-9 s) in the place right after another controller than in the first place, in 4 of 5 benches with two
    contenders, 3 of them the same controller twice (2026-12-04; the cause was not found). Rotating the
    order gives each contestant each place in turn, so repeated scenarios (`--burst-pods
    200,200,200,200`) compare them on equal terms."""
    n = by % len(contestants)
    return contestants[n:] + contestants[:n]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if os.geteuid() != 0:
        print("bench: needs root (the sandbox's pods are network namespaces)", file=sys.stderr)
        return 2
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    signal.signal(signal.SIGTERM, _terminate)
    chosen = scenarios(args)
    rivals = contenders(args)
    contestants = [*rivals, *([Oracle(sessions=True)] if args.session_oracle else []), Oracle()]
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "logs" if args.keep_logs else Path(tempfile.mkdtemp(prefix="kvc-bench-"))
    started = time.monotonic()
    doc = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
           "command": shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]),
           "contenders": {c.name: c.template for c in rivals},
           "contestants": [c.name for c in contestants],
           "nodes": args.nodes, "tls": args.tls, "cpus": os.cpu_count(),
           "load_before": os.getloadavg(),
           "scenarios": []}
    status = 0
    try:
        for i, scenario in enumerate(chosen):
            entry = {"kind": scenario.kind, "name": scenario.name, "params": dataclasses.asdict(scenario),
                     "minimal": scenario.minimal, "runs": {}}
            doc["scenarios"].append(entry)
            for contestant in rotated(contestants, i):
                label = f"{scenario.name} | {contestant.name}"
                print(f"bench: {label}", file=sys.stderr, flush=True)
                try:
                    with Run(scenario, contestant, logs / f"{i}-{scenario.kind}-{contestant.name}", label,
                             nodes=args.nodes, tls=args.tls) as run:
                        figures = scenario.drive(run)
                        entry["runs"][contestant.name] = {**figures, **run.figures()}
                except Exception as error:  # noqa: BLE001 - one failed run must not cost the others
                    print(f"bench: {label} failed: {error!r}", file=sys.stderr, flush=True)
                    entry["runs"][contestant.name] = {"name": contestant.name, "converged": False,
                                                      "error": repr(error)}
                    status = 1
    except KeyboardInterrupt:
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        status = 130
    finally:
        doc["wall_seconds"] = round(time.monotonic() - started, 1)
        doc["load_after"] = os.getloadavg()
        report.write_json(doc, args.out / "bench.json")
    print(report.table(doc))
    print(f"\n{doc['date']}, {doc['wall_seconds']:.0f}s: {doc['command']}")
    print(f"{doc['cpus']} CPUs; 1-minute load average {doc['load_before'][0]:.1f} before, "
          f"{doc['load_after'][0]:.1f} after (other work on the machine counts too)")
    print(f"figures: {args.out / 'bench.json'}")
    if report.plot(doc, args.out / "bench.png"):
        print(f"plot: {args.out / 'bench.png'}")
    else:
        print("plot: not drawn (matplotlib missing: pip install -e '.[bench]')")
    if not args.keep_logs and status == 0:
        shutil.rmtree(logs, ignore_errors=True)
    elif not args.keep_logs:
        print(f"logs: {logs}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
