"""Who is measured: contenders (any controller, each from a named command template), the oracle (oracle.py)
and, when asked for, the session oracle.

    --contender 'sessions-on={default} --sessions on'     # NAME=TEMPLATE; {default}: DEFAULT_CONTROLLER
    --controller TEMPLATE                                 # one contender, named "contender"

A name is what the table's column and bench.json's entry are called (and the run's log file): letters,
digits, `.`, `_`, `-`; "oracle" and "session-oracle" are the oracles'.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from kube_vxlan_controller.settings import Settings

#: this project's controller, quiet, without its admin and health endpoints (they would need free ports).
DEFAULT_CONTROLLER = ("kube-vxlan-controller run --kubeconfig {kubeconfig} --namespace kube-system "
                      "--admin '' --health '' --log-level WARNING")
#: the name of the contender `--controller` gives (and of the default one)
DEFAULT_NAME = "contender"
ORACLE = "oracle"
SESSION_ORACLE = "session-oracle"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")


@dataclass(frozen=True)
class Contender:
    """A controller started from a command template: `{default}` replaced by DEFAULT_CONTROLLER, words
    split as a shell would, then `{kubeconfig}` replaced in each (the sandbox's kubeconfig; the network
    ConfigMap is kube-system/kube-vxlan-controller). The bench's interpreter directory comes first on PATH,
    so the venv's console scripts are found."""

    template: str = DEFAULT_CONTROLLER
    name: str = DEFAULT_NAME

    @classmethod
    def parse(cls, text: str) -> "Contender":
        """`NAME=TEMPLATE`, as `--contender` takes it; ValueError says what is wrong."""
        name, sep, template = text.partition("=")
        if not sep or not template.strip():
            raise ValueError(f"{text!r}: give NAME=TEMPLATE")
        if not _NAME.fullmatch(name) or name in (ORACLE, SESSION_ORACLE):
            raise ValueError(f"{name!r}: a name is 1-32 of [A-Za-z0-9_.-], and not {ORACLE!r} or {SESSION_ORACLE!r}")
        return cls(template, name)

    def argv(self, kubeconfig: Path, scenario) -> list[str]:
        words = shlex.split(self.template.replace("{default}", DEFAULT_CONTROLLER))
        return [word.format(kubeconfig=kubeconfig) for word in words]

    @property
    def resync(self) -> float:
        """Seconds between its periodic re-reads of a pod: its `--resync`, else this controller's default."""
        flags = argparse.ArgumentParser(add_help=False)
        flags.add_argument("--resync", type=float, default=Settings.resync)
        return flags.parse_known_args(self.argv(Path(), None))[0].resync


@dataclass(frozen=True)
class Oracle:
    """The oracle (oracle.py): one exec per fdb batch, what ratios are taken against; with `sessions`, the
    session oracle, its batches over one long-lived exec per pod."""

    sessions: bool = False
    #: it never re-reads
    resync: None = None

    @property
    def name(self) -> str:
        return SESSION_ORACLE if self.sessions else ORACLE

    def argv(self, kubeconfig: Path, scenario) -> list[str]:
        return [sys.executable, "-m", "bench.oracle", "--kubeconfig", str(kubeconfig),
                "--configmap", json.dumps(scenario.configmap), "--expect", str(scenario.expect),
                "--coalesce", str(scenario.coalesce), *(["--sessions"] if self.sessions else [])]
