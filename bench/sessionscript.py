"""What one fdb request over a session costs in the pod: CPU and wall time of the session script (root).

    sudo .venv/bin/python -m bench.sessionscript [--requests 1000] [--peers 1] [--rounds 3] [--package NAME=DIR …]

Runs `agentsession.session_argv` (`sh -c SCRIPT`, the host's `sh`) in a scratch network namespace with
one vxlan link, writes `--requests` fdb requests of `--peers` lines each (alternately `fdb append` and
`fdb del` of the same peers: 1 is a change under churn, 199 a first sync in a network of 200) on its
stdin at once, and reads every reply. Prints per request the CPU the script and all it
started took (user + system, from the children's rusage) and the wall time, and how many replies said
exit 0. Each `--package NAME=DIR` measures the script of the `kube_vxlan_controller` package in DIR too
(another commit's, say `git archive COMMIT kube_vxlan_controller | tar -x -C DIR`), in turn with this
work tree's, `--rounds` times. The namespace is removed at the end, also on failure. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

NETNS = f"kvc-sessionscript-{os.getpid()}"


def _script_of(directory: Path) -> tuple[str, object]:
    """The session script and `request` of the package in `directory` (imported apart, then forgotten)."""
    saved = {name: module for name, module in sys.modules.items() if name.startswith("kube_vxlan_controller")}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(directory))
    try:
        from kube_vxlan_controller import agentsession
        return agentsession.session_argv(5)[2], agentsession.request
    finally:
        sys.path.remove(str(directory))
        for name in [n for n in sys.modules if n.startswith("kube_vxlan_controller")]:
            del sys.modules[name]
        sys.modules.update(saved)


def measure(script: str, request, n: int, peers: int = 1) -> tuple[float, float, int]:
    """(CPU ms per request, wall ms per request, replies with exit 0)."""
    data = "".join(request(i, "fdb", "".join(f"fdb {'append' if i % 2 == 0 else 'del'} 00:00:00:00:00:00 dev vx0 "
                                             f"dst 10.9.{k // 250 % 250}.{k % 250 + 1}\n"
                                             for k in range(i // 2 * peers, (i // 2 + 1) * peers)))
                   for i in range(n))
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    done = subprocess.run(["ip", "netns", "exec", NETNS, "sh", "-c", script], input=data, capture_output=True,
                          text=True, check=False)
    wall, after = time.monotonic() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return cpu / n * 1000, wall / n * 1000, sum(f"--kvc-end-- {i} 0\n" in done.stdout for i in range(n))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sessionscript", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--peers", type=int, default=1, help="fdb lines in each request")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--package", action="append", default=[], metavar="NAME=DIR",
                        help="also measure the session script of the kube_vxlan_controller package in DIR")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench.sessionscript: needs root (a network namespace)", file=sys.stderr)
        return 2
    scripts = {"this work tree": _script_of(Path(__file__).resolve().parent.parent)}
    for item in args.package:
        name, _, directory = item.partition("=")
        scripts[name] = _script_of(Path(directory))
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    try:
        subprocess.run(["ip", "-n", NETNS, "link", "add", "vx0", "type", "vxlan", "id", "5", "dstport", "4789",
                        "dev", "lo"], check=True)
        width = max(map(len, scripts))
        for _ in range(args.rounds):
            for name, (script, request) in scripts.items():
                cpu, wall, ok = measure(script, request, args.requests, args.peers)
                print(f"{name:{width}s}  CPU {cpu:.2f} ms/request  wall {wall:.2f} ms/request  "
                      f"{ok}/{args.requests} replies exit 0", flush=True)
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
