"""What the controller asked of the pods, as the sandbox's exec log shows it: each exec, and each request
written into a session (a session's requests are in its exec's stdin, and its first may be in its argv), by
pod and kind.

Kinds: "state" (a read of links, routes and fdb), "fdb", "links" (an fdb batch; links and fdb together),
"session" (a session opened: one exec), "other" (setup, release, anything else).
"""

from __future__ import annotations

import collections
import re

from kube_vxlan_controller import agent

_REQUEST = re.compile(r"^kvc \d+ (\w+)$", re.MULTILINE)


def kind_of(argv: list[str]) -> str:
    if argv == agent.STATE_ARGV:
        return "state"
    if argv[:2] == ["sh", "-c"] and "--kvc-end--" in argv[2]:
        return "session"
    if argv[-4:] == ["bridge", "-force", "-batch", "-"]:
        return "fdb"
    if argv[2:4] == ["sh", "-c"] and "<<'KVC'" in argv[4]:
        return "links"
    return "other"


def requests(execs: list[dict]) -> collections.Counter[tuple[str, str]]:
    """(pod, kind) → how many, over the exec log `execs` (`sandbox.execs()`): a session counts once as
    "session" and once more per request it carried (in its argv or its stdin)."""
    seen: collections.Counter[tuple[str, str]] = collections.Counter()
    for e in execs:
        kind = kind_of(e["argv"])
        seen[e["pod"], kind] += 1
        if kind == "session":
            seen.update((e["pod"], k) for k in _REQUEST.findall(e["stdin"]))
            if len(e["argv"]) > 3:  # its opening carried an fdb request (agentsession.carried)
                seen[e["pod"], "fdb"] += 1
    return seen


def changes(seen: collections.Counter[tuple[str, str]]) -> collections.Counter[tuple[str, str]]:
    """Of `seen`, what changes something in a pod: every kind but reads and session opens."""
    return collections.Counter({key: n for key, n in seen.items() if key[1] not in ("state", "session") and n > 0})
