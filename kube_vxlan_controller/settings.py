"""Every setting of `kube-vxlan-controller run`, in one dataclass.

Each field is a flag (`--exec-deadline 5`) and a `KVC_*` environment variable (`KVC_EXEC_DEADLINE=5`);
a flag wins over the environment, the environment over the default. Defaults are the original's names.
`Settings` checks every value when built (`InvalidSetting` names the field); `from_arguments` turns a
bad value into a usage `Failure` that names the flag or the variable it came from.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
import os
import socket
import uuid
from dataclasses import dataclass, field

from .admin import parse_address
from .agent import release_argv
from .election import check_timing
from .failures import USAGE_ERROR, Failure
from .k8s.client import own_namespace

#: seconds a command may run in a pod past its exec's deadline: the `timeout N` around it (agent.in_pod_timeout)
#: lets it run for the deadline rounded down, plus one second.
EXEC_LINGER = 1.0
#: loguru's levels, as `--log-level` takes them
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
#: (field, lowest value, whether the lowest itself is refused, unit) of the numbers with a bound of their own
_BOUNDS = (("exec_deadline", 0, True, " seconds"), ("max_concurrent_execs", 1, False, ""),
           ("coalesce", 0, False, " seconds"), ("coalesce_max", 0, False, " seconds"), ("hold", 0, False, " seconds"),
           ("resync", 0, True, " seconds"), ("restart_intensity", 0, False, ""),
           ("restart_period", 0, True, " seconds"))


class InvalidSetting(ValueError):
    """A setting's value is wrong; `name` is the field's."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def default_identity() -> str:
    """client-go's: the hostname (in Kubernetes, the pod's name), "_", a random UUID, so that a restarted
    process is a new candidate and never mistakes its predecessor's Lease for its own."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclass(frozen=True, kw_only=True)
class Settings:
    kubeconfig: str | None = field(default=None, metadata={
        "help": "kubeconfig file; when unset, in a pod its service account, else $KUBECONFIG or ~/.kube/config"})
    namespace: str = field(
        default_factory=own_namespace,
        metadata={"help": "the controller's namespace, where its ConfigMap lives (default: its own, else kube-system)"},
    )
    watch_namespace: str | None = field(
        default=None, metadata={"help": "watch pods of this namespace only (default: all namespaces)"}
    )
    label: str = field(
        default="vxlan.openvnf.org",
        metadata={"help": "pods opt in with this label set to \"true\" (watched: pods that have it, as the "
                          "original selects; other values are ignored)"})
    annotation: str = field(
        default="vxlan.openvnf.org/networks", metadata={"help": "annotation naming a pod's networks and options"}
    )
    configmap: str = field(default="kube-vxlan-controller", metadata={"help": "ConfigMap with per-network defaults"})
    init_agent: str = field(
        default="vxlan-controller-agent-init", metadata={"help": "init agent container: interfaces are set up in it"}
    )
    agent: str = field(default="vxlan-controller-agent", metadata={"help": "sidecar agent container: fdb is kept in it"})
    terminate_file: str = field(
        default="/run/terminate",
        metadata={"help": "touched in the init agent, in the same exec as its TERM: older agent images wait for "
                          "it ('' disables)"},
    )
    exec_deadline: float = field(default=10.0, metadata={"help": "seconds one exec in a pod may take"})
    max_concurrent_execs: int = field(default=32, metadata={"help": "execs in flight at once, process-wide"})
    coalesce: float = field(
        default=0.1, metadata={"help": "seconds at least between two fdb syncs of a pod when its peers change "
                                       "again (while changes keep coming the window follows what its syncs "
                                       "take, up to --coalesce-max)"}
    )
    coalesce_max: float = field(
        default=1.0, metadata={"help": "the longest a pod's window between two fdb syncs grows to"}
    )
    hold: float = field(
        default=10.0, metadata={"help": "seconds at most a growing network's members first hear late of new "
                                        "peers (they hear once the pods then on their way joined, so a burst "
                                        "costs each member one fdb sync); later holds of the same growth last "
                                        "as long as it has lasted (0: always at once)"}
    )
    sessions: str = field(
        default="on", metadata={"help": "on: each pod's fdb changes and reads go over one long-lived exec into its "
                                        "sidecar (a session), so an update costs a line, not an exec; off: one "
                                        "exec per change"})
    resync: float = field(default=300.0, metadata={"help": "seconds between full fdb re-reads of each pod (repairs drift)"})
    admin: str = field(
        default="127.0.0.1:8081", metadata={"help": "loopback address of the query endpoint used by inspect/list"}
    )
    health: str = field(
        default="0.0.0.0:8080", metadata={"help": "address serving /livez, /healthz, /readyz and /metrics ('' disables)"}
    )
    lease_name: str = field(
        default="kube-vxlan-controller",
        metadata={"help": "the coordination.k8s.io/v1 Lease in --namespace on which replicas elect their leader "
                          "(the only one that watches and execs)"})
    lease_duration: int = field(
        default=15, metadata={"help": "seconds a standby waits, after it last saw the Lease change, before it "
                                      "takes over (client-go's LeaseDuration)"})
    renew_deadline: float = field(
        default=10.0, metadata={"help": "seconds the leader keeps trying to renew the Lease before it gives up "
                                        "leading: it stops every exec and exits 1"})
    retry_period: float = field(
        default=2.0, metadata={"help": "seconds between tries to acquire (a standby) or renew (the leader)"})
    identity: str = field(
        default_factory=default_identity,
        metadata={"help": "this replica's name in the Lease (default: the hostname, i.e. the pod name, '_' and "
                          "a random UUID)"})
    restart_intensity: int = field(
        default=3, metadata={"help": "restarts of crashed actors allowed per level of the supervision tree within "
                                     "--restart-period; one more and the level gives up: its parent restarts it, "
                                     "and at the root the process exits 1 (OTP's default is 1 in 5 s)"})
    restart_period: float = field(
        default=5.0, metadata={"help": "seconds over which --restart-intensity counts restarts"})
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING or ERROR (DEBUG also shows "
                                                                     "the traceback of a start-up error)"})
    log_format: str = field(default="text", metadata={"help": "text, or json: one JSON object a line with "
                                                              "time, level, pod, network and message"})

    def __post_init__(self) -> None:
        for name, low, strict, unit in _BOUNDS:
            value = getattr(self, name)
            if not math.isfinite(value) or value < low or (strict and value == low):
                bound = "more than" if strict else "at least"
                raise InvalidSetting(name, f"must be {bound} {low}{unit}, not {value:g}")
        if self.log_level.upper() not in LOG_LEVELS:
            raise InvalidSetting("log_level", f"must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}")
        if self.sessions not in ("on", "off"):
            raise InvalidSetting("sessions", f"must be on or off, not {self.sessions!r}")
        if self.log_format not in LOG_FORMATS:
            raise InvalidSetting("log_format", f"must be one of {', '.join(LOG_FORMATS)}, not {self.log_format!r}")
        _check_address("admin", self.admin, loopback=True)
        _check_address("health", self.health, loopback=False)
        try:
            release_argv(self.terminate_file)  # fails now on a path a shell would misread
        except ValueError as error:
            raise InvalidSetting("terminate_file", str(error)) from None
        check_timing(self.lease_duration, self.renew_deadline, self.retry_period)
        if not self.exec_deadline + EXEC_LINGER + self.retry_period < self.lease_duration:
            # The leader starts an exec only if it ends before its Lease could expire (election.py):
            # right after a renewal that must still leave room for one.
            raise ValueError(f"an exec must fit in a lease: --exec-deadline ({self.exec_deadline}) + "
                             f"{EXEC_LINGER:g} + --retry-period ({self.retry_period}) must be less than "
                             f"--lease-duration ({self.lease_duration})")

    @property
    def selector(self) -> str:
        """What pods are listed and watched by: the label's existence, as the original's selector (its
        value is checked by the watcher, so a pod relabelled to "false" is seen leaving)."""
        return self.label


def _check_address(name: str, address: str, *, loopback: bool) -> None:
    """'' (off) or HOST:PORT, as the endpoints in admin.py listen on them; `loopback`: a loopback IP."""
    if not address:
        return
    try:
        host, port = parse_address(address)
    except ValueError:
        host, port = "", -1
    if not 0 <= port <= 65535:
        raise InvalidSetting(name, f"must be HOST:PORT (or '' for none), not {address!r}")
    if loopback:
        try:
            ok = ipaddress.ip_address(host).is_loopback
        except ValueError:
            ok = False
        if not ok:
            raise InvalidSetting(name, f"must be a loopback IP address and a port (127.0.0.1:8081), not {address!r}")


def _flag(f: dataclasses.Field) -> str:
    return "--" + f.name.replace("_", "-")


def _env(f: dataclasses.Field) -> str:
    return "KVC_" + f.name.upper()


def _kind(f: dataclasses.Field):
    return {"float": float, "int": int}.get(str(f.type), str)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(Settings):
        parser.add_argument(_flag(f), dest=f.name, type=_kind(f), default=None,
                            help=f"{f.metadata['help']} [env {_env(f)}]")


def from_arguments(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Settings:
    """The settings from parsed flags, else `KVC_*` variables, else defaults; a bad value is a usage
    `Failure` naming where it came from (`--resync -5`, `KVC_EXEC_DEADLINE='abc'`)."""
    environ = os.environ if environ is None else environ
    values, origin = {}, {}
    for f in dataclasses.fields(Settings):
        given = getattr(args, f.name, None)
        if given is not None:
            origin[f.name] = _flag(f)
        elif _env(f) in environ:
            origin[f.name] = f"{_env(f)}={environ[_env(f)]!r}"
            try:
                given = _kind(f)(environ[_env(f)])
            except ValueError:
                number = "a whole number" if _kind(f) is int else "a number"
                raise Failure(f"{origin[f.name]}: not {number}", USAGE_ERROR) from None
        if given is not None:
            values[f.name] = given
    try:
        return Settings(**values)
    except InvalidSetting as error:
        flag = _flag(next(f for f in dataclasses.fields(Settings) if f.name == error.name))
        raise Failure(f"{origin.get(error.name, flag + ' (its default)')}: {error}", USAGE_ERROR) from None
    except ValueError as error:  # a rule between several settings; its message names them
        raise Failure(f"{error} (flags, or KVC_* variables)", USAGE_ERROR) from None
