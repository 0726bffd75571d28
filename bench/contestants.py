"""Who is measured: the contender (any controller, from a command template) and the oracle (oracle.py)."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

#: this project's controller, quiet, without its admin and health endpoints (they would need free ports).
DEFAULT_CONTROLLER = ("kube-vxlan-controller run --kubeconfig {kubeconfig} --namespace kube-system "
                      "--admin '' --health '' --log-level WARNING")


@dataclass(frozen=True)
class Contender:
    """A controller started from a command template: words split as a shell would, then `{kubeconfig}`
    replaced in each (the sandbox's kubeconfig; the network ConfigMap is kube-system/kube-vxlan-controller).
    The bench's interpreter directory comes first on PATH, so the venv's console scripts are found."""

    template: str = DEFAULT_CONTROLLER
    role: str = "contender"

    def argv(self, kubeconfig: Path, scenario) -> list[str]:
        return [word.format(kubeconfig=kubeconfig) for word in shlex.split(self.template)]


@dataclass(frozen=True)
class Oracle:
    role: str = "oracle"

    def argv(self, kubeconfig: Path, scenario) -> list[str]:
        return [sys.executable, "-m", "bench.oracle", "--kubeconfig", str(kubeconfig),
                "--configmap", json.dumps(scenario.configmap), "--expect", str(scenario.expect),
                "--coalesce", str(scenario.coalesce)]
