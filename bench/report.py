"""The bench's output: the table (stdout), the JSON of every figure, the plot (PNG, when matplotlib is there).

Ratios come first in the table: contender time over oracle time (T/T_min), then both times, then execs
(the sandbox's count: total, and per pod or per change), then the largest RSS of each process.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

COLUMNS = (("scenario", 32), ("metric", 14), ("T/T_min", 8), ("contender", 10), ("oracle", 10),
           ("execs c / o", 15), ("per pod c / o", 15), ("RSS MB c / o", 13))


def _num(value, unit: str = "s") -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value}{unit}"
    return f"{value:.2f}{unit}" if value < 100 else f"{value:.0f}{unit}"


def _ratio(c, o) -> str:
    return f"{c / o:.1f}" if c is not None and o and o > 0 else "—"


def _pair(c, o, fmt="{:.0f}") -> str:
    show = lambda v: "—" if v is None else fmt.format(v)  # noqa: E731
    return f"{show(c)} / {show(o)}"


def _get(d: dict, *keys):
    for key in keys:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def rows(scenario: dict) -> list[tuple[str, ...]]:
    c, o = scenario.get("contender") or {}, scenario.get("oracle") or {}
    kind = scenario["kind"]
    per = lambda r: r["execs"] / r["pods"] if r.get("pods") and r.get("execs") is not None else None  # noqa: E731
    execs = _pair(c.get("execs"), o.get("execs"))
    per_pod = _pair(per(c), per(o), "{:.1f}")
    rss = _pair(c.get("rss_max_mb"), o.get("rss_max_mb"))
    if kind == "joins":
        metrics = [(f"join {q}", ("per_join", q)) for q in ("p50", "max")]
    elif kind == "churn":
        metrics = [(f"{what} lag {q}", (f"{what}_lag", q)) for what in ("join", "leave") for q in ("p50", "p99", "max")]
    else:
        metrics = [("wired in", ("seconds",))]
    out = []
    if kind == "churn":
        rate = lambda r: (f"{r['creations_per_second']:g}+{r['deletions_per_second']:g}"  # noqa: E731
                          if "creations_per_second" in r else "—")
        out.append((scenario["name"], "achieved /s", "", rate(c), rate(o), execs, per_pod, rss))
        # events still unsettled after the drain: the lags below leave them out (their lag is longer)
        out.append(("", "unsettled", "", _num(c.get("unfinished"), ""), _num(o.get("unfinished"), ""), "", "", ""))
        execs = per_pod = rss = ""
    for i, (label, keys) in enumerate(metrics):
        cv, ov = _get(c, *keys), _get(o, *keys)
        first = i == 0
        out.append((scenario["name"] if first and not out else "", label, _ratio(cv, ov), _num(cv), _num(ov),
                    execs if first else "", per_pod if first else "", rss if first else ""))
    if kind == "idle":
        # steady state: CPU of one core, the execs it ran meanwhile (its resync), its largest RSS then
        cs, os_ = _get(c, "steady") or {}, _get(o, "steady") or {}
        out.append(("", "steady CPU", "", _num(cs.get("cpu_percent"), "%"), _num(os_.get("cpu_percent"), "%"),
                    _pair(cs.get("execs"), os_.get("execs")), "", _pair(cs.get("rss_max_mb"), os_.get("rss_max_mb"))))
    return out


def table(doc: dict) -> str:
    lines = ["  ".join(name.ljust(width) for name, width in COLUMNS)]
    lines.append("  ".join("-" * width for _, width in COLUMNS))
    for scenario in doc["scenarios"]:
        for row in rows(scenario):
            lines.append("  ".join(cell.ljust(width) for cell, (_, width) in zip(row, COLUMNS)))
    lines.append("")
    lines.append("T/T_min: contender seconds over oracle seconds. execs: counted by the sandbox (server side). "
                 "per pod: execs per pod created (churn: per creation or deletion; joins: per join).")
    lines.append("steady CPU: share of one core over the steady window (idle), with the execs run meanwhile "
                 "and the largest RSS then.")
    lines.append("churn: achieved creations+deletions per second (paced by what the sandbox achieves); unsettled: "
                 "joins and leaves not complete when the drain ended, left out of the lags.")
    for scenario in doc["scenarios"]:
        lines.append(f"minimal exec set, {scenario['name']}: {scenario['minimal']}")
    return "\n".join(lines)


def write_json(doc: dict, path: Path) -> None:
    path.write_text(json.dumps(doc, indent=1) + "\n")


COLOURS = {"contender": "tab:red", "oracle": "tab:blue"}


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
        _panel(ax, scenario)
    for ax in list(axes.flat)[len(scenarios):]:
        ax.axis("off")
    fig.suptitle(f"bench {doc['date']}: contender (red) vs oracle (blue)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _panel(ax, scenario: dict) -> None:
    kind = scenario["kind"]
    runs = [(role, scenario.get(role) or {}) for role in ("contender", "oracle")]
    if kind == "joins":
        for role, run in runs:
            joins = run.get("joins") or []
            ax.plot([j["members"] for j in joins], [j["seconds"] for j in joins], "o-", ms=3,
                    color=COLOURS[role], label=role)
        ax.set_xlabel("members before the join")
        ax.set_ylabel("seconds until all wired")
        ax.set_ylim(bottom=0)
    elif kind == "churn":
        for role, run in runs:
            lags = run.get("lags") or {}
            for what, marker in (("join", "o"), ("leave", "x")):
                points = lags.get(what) or []
                ax.scatter([t for t, _ in points], [lag for _, lag in points], s=6, marker=marker,
                           color=COLOURS[role], alpha=0.6, label=f"{role} {what}")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("seconds into the churn")
        ax.set_ylabel("lag (s)")
    else:
        for role, run in runs:
            timeline = run.get("timeline") or []
            ax.step([t for t, _, _ in timeline], [w for _, w, _ in timeline], where="post",
                    color=COLOURS[role], label=f"{role}: {_num(run.get('seconds'))}")
        ax.set_xlabel("seconds")
        ax.set_ylabel("pods wired")
        ax.set_ylim(bottom=0)
        ax.set_xlim(left=0)
    c, o = runs[0][1], runs[1][1]
    key = ("per_join", "p50") if kind == "joins" else ("join_lag", "p50") if kind == "churn" else ("seconds",)
    ax.set_title(f"{scenario['name']}\nT/T_min {_ratio(_get(c, *key), _get(o, *key))}, "
                 f"execs {_pair(c.get('execs'), o.get('execs'))}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
