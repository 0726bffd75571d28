"""The bench's output: the table (stdout), the JSON of every figure, the plot (PNG, when matplotlib is there).

The table has one column per contestant (the contenders in the order given, the oracle last) and one row
per figure: times with their ratio to the oracle's in brackets (T/T_min), execs (the sandbox's count:
total, and per pod or per change), the largest RSS, and each scenario's own figures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.contestants import ORACLE



def _num(value, unit: str = "s") -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value}{unit}"
    return f"{value:.2f}{unit}" if value < 100 else f"{value:.0f}{unit}"


def _ratio(c, o) -> str:
    return f"{c / o:.1f}" if c is not None and o and o > 0 else "—"


def _get(d: dict, *keys):
    for key in keys:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _mb(value) -> str:
    return "—" if value is None else f"{value:.0f}"


def _execs(run: dict) -> str:
    """Execs in all, and per pod (or per change, per join): `400 (2.0)`."""
    if run.get("execs") is None:
        return "—"
    return f"{run['execs']}" + (f" ({run['execs'] / run['pods']:.1f})" if run.get("pods") else "")


def _joins_split(run: dict) -> str:
    """Execs per join into the newcomer / into the members, averaged over the joins."""
    joins = run.get("joins") or []
    if not joins:
        return "—"
    newcomer = sum(j["execs_newcomer"] for j in joins) / len(joins)
    members = sum(j["execs_members"] for j in joins) / len(joins)
    return f"{newcomer:.1f} / {members:.1f}"


def _open(run: dict) -> str:
    steady = run.get("steady") or {}
    if "open_execs_end" not in steady:
        return "—"
    return f"{steady['open_execs_end']} / {steady['open_execs_peak']}"


def _steady(run: dict) -> str:
    steady = run.get("steady") or {}
    if "cpu_percent" not in steady:
        return "—"
    return f"{_num(steady['cpu_percent'], '%')} / {steady['seconds']:g}s"


def _rate(run: dict) -> str:
    if "creations_per_second" not in run:
        return "—"
    return f"{run['creations_per_second']:g}+{run['deletions_per_second']:g}"


def rows(scenario: dict, names: list[str]) -> list[tuple[str, ...]]:
    """The table's rows for one scenario: (scenario, figure, one cell per name)."""
    runs = [scenario["runs"].get(name) or {} for name in names]
    oracle = scenario["runs"].get(ORACLE) or {}
    kind = scenario["kind"]

    def timed(*keys) -> list[str]:
        cells = []
        for name, run in zip(names, runs):
            value = _get(run, *keys)
            ratio = "" if name == ORACLE or value is None else f" ({_ratio(value, _get(oracle, *keys))})"
            cells.append(_num(value) + ratio)
        return cells

    def each(cell) -> list[str]:
        return [cell(run) for run in runs]

    figures: list[tuple[str, list[str]]] = []
    if kind == "joins":
        figures += [(f"join {q} (T/T_min)", timed("per_join", q)) for q in ("p50", "max")]
        figures += [("execs (per join)", each(_execs)), ("per join: newcomer / members", each(_joins_split))]
    elif kind == "churn":
        figures += [("achieved /s", each(_rate)), ("unsettled", each(lambda r: _num(r.get("unfinished"), "")))]
        figures += [(f"{what} lag {q} (T/T_min)", timed(f"{what}_lag", q))
                     for what in ("join", "leave") for q in ("p50", "p99", "max")]
        figures.append(("execs (per change)", each(_execs)))
    else:
        figures += [("wired in (T/T_min)", timed("seconds")), ("of which all running", timed("running_seconds")),
                    ("machine CPU s until wired", timed("machine_cpu_seconds")), ("execs (per pod)", each(_execs))]
    figures.append(("RSS MB, most", each(lambda r: _mb(r.get("rss_max_mb")))))
    if kind == "idle":
        figures += [("steady CPU / window", each(_steady)),
                    ("steady execs", each(lambda r: _num(_get(r, "steady", "execs"), ""))),
                    ("steady RSS MB, most", each(lambda r: _mb(_get(r, "steady", "rss_max_mb")))),
                    ("open execs end / peak", each(_open))]
    if any(run.get("error") for run in runs):
        figures.append(("failed", each(lambda r: "yes" if r.get("error") else "")))
    return [(scenario["name"] if i == 0 else "", label, *cells) for i, (label, cells) in enumerate(figures)]


def table(doc: dict) -> str:
    names = doc["contestants"]
    header = ("scenario", "figure", *names)
    body = [row for scenario in doc["scenarios"] for row in rows(scenario, names)]
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    lines = []
    for row in (header, ["-" * w for w in widths], *body):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    lines.append("")
    lines += [f"{name}: {template}" for name, template in doc["contenders"].items()]
    lines.append("(T/T_min): the contender's time over the oracle's. execs: counted by the sandbox (server side), "
                 "a long-lived exec once, when it is opened; in brackets per pod created (churn: per creation or "
                 "deletion; joins: per join).")
    lines.append("per join: newcomer / members: execs into the joining pod, and into the pods already there, "
                 "per join.")
    lines.append("steady (idle): over the window after wiring (a contender's --resync: each pod re-read once): "
                 "CPU as a share of one core, the execs run, the largest RSS; open execs: running at the "
                 "window's end / the most at once since the sandbox started (a long-lived session counts).")
    lines.append("churn: achieved creations+deletions per second (paced by what the sandbox achieves); unsettled: "
                 "joins and leaves not complete when the drain ended, left out of the lags.")
    for scenario in doc["scenarios"]:
        lines.append(f"minimal exec set, {scenario['name']}: {scenario['minimal']}")
    return "\n".join(lines)


def write_json(doc: dict, path: Path) -> None:
    path.write_text(json.dumps(doc, indent=1) + "\n")


#: the oracle's colour; contenders take the others in order
ORACLE_COLOUR = "tab:blue"
COLOURS = ("tab:red", "tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def colours(names: list[str]) -> dict[str, str]:
    others = iter(COLOURS * (1 + len(names) // len(COLOURS)))
    return {name: ORACLE_COLOUR if name == ORACLE else next(others) for name in names}


def plot(doc: dict, path: Path) -> bool:
    """One panel per scenario; False (nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    scenarios = doc["scenarios"]
    if not scenarios:
        return False
    ncols = min(3, len(scenarios))
    nrows = math.ceil(len(scenarios) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(7.0, 5.2 * ncols), 3.9 * nrows + 0.4), squeeze=False)
    for ax, scenario in zip(axes.flat, scenarios):
        _panel(ax, scenario, doc["contestants"])
    for ax in list(axes.flat)[len(scenarios):]:
        ax.axis("off")
    fig.suptitle(f"bench {doc['date']}: " + ", ".join(doc["contestants"]), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _panel(ax, scenario: dict, names: list[str]) -> None:
    kind = scenario["kind"]
    colour = colours(names)
    runs = [(name, scenario["runs"].get(name) or {}) for name in names]
    if kind == "joins":
        for name, run in runs:
            joins = run.get("joins") or []
            ax.plot([j["members"] for j in joins], [j["seconds"] for j in joins], "o-", ms=3,
                    color=colour[name], label=name)
        ax.set_xlabel("members before the join")
        ax.set_ylabel("seconds until all wired")
        ax.set_ylim(bottom=0)
    elif kind == "churn":
        for name, run in runs:
            lags = run.get("lags") or {}
            for what, marker in (("join", "o"), ("leave", "x")):
                points = lags.get(what) or []
                ax.scatter([t for t, _ in points], [lag for _, lag in points], s=6, marker=marker,
                           color=colour[name], alpha=0.6, label=f"{name} {what}")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("seconds into the churn")
        ax.set_ylabel("lag (s)")
    else:
        for name, run in runs:
            timeline = run.get("timeline") or []
            ax.step([t for t, _, _ in timeline], [w for _, w, _ in timeline], where="post",
                    color=colour[name], label=f"{name}: {_num(run.get('seconds'))}")
        ax.set_xlabel("seconds")
        ax.set_ylabel("pods wired")
        ax.set_ylim(bottom=0)
        ax.set_xlim(left=0)
    key = ("per_join", "p50") if kind == "joins" else ("join_lag", "p50") if kind == "churn" else ("seconds",)
    oracle = scenario["runs"].get(ORACLE) or {}
    ratios = ", ".join(f"{name} {_ratio(_get(run, *key), _get(oracle, *key))}" for name, run in runs
                       if name != ORACLE)
    ax.set_title(f"{scenario['name']}\nT/T_min: {ratios}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
