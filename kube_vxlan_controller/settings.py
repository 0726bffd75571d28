"""Every setting of `kube-vxlan-controller run`, in one dataclass.

Each field is a flag (`--exec-deadline 5`) and a `KVC_*` environment variable (`KVC_EXEC_DEADLINE=5`);
a flag wins over the environment, the environment over the default. Defaults are the original's names.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .agent import release_argv
from .election import check_timing

#: Where Kubernetes mounts the namespace of a pod's service account.
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: The seed's fallback when the controller does not run in a pod.
DEFAULT_NAMESPACE = "kube-system"
#: seconds a command may run in a pod past its exec's deadline: the `timeout N` around it (actors/pod.py)
#: lets it run for the deadline rounded down, plus one second.
EXEC_LINGER = 1.0


def own_namespace(path: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The namespace this process runs in: the service account's when mounted, else `kube-system`."""
    try:
        text = path.read_text().strip()
    except OSError:
        return DEFAULT_NAMESPACE
    return text or DEFAULT_NAMESPACE


def default_identity() -> str:
    """client-go's: the hostname (in Kubernetes, the pod's name), "_", a random UUID, so that a restarted
    process is a new candidate and never mistakes its predecessor's Lease for its own."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclass(frozen=True, kw_only=True)
class Settings:
    kubeconfig: str | None = field(default=None, metadata={"help": "kubeconfig file; in-cluster config when unset"})
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
        default=0.1, metadata={"help": "seconds between two fdb syncs of a pod when its peers change again "
                                       "(doubles while changes keep coming, up to --coalesce-max)"}
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
    resync: float = field(default=300.0, metadata={"help": "seconds between full fdb re-reads of each pod (repairs drift)"})
    admin: str = field(
        default="127.0.0.1:8081", metadata={"help": "loopback address of the query endpoint used by inspect/list"}
    )
    health: str = field(
        default="0.0.0.0:8080", metadata={"help": "address serving /healthz, /readyz and /metrics ('' disables)"}
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
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING or ERROR"})

    def __post_init__(self) -> None:
        release_argv(self.terminate_file)  # fails now, with a clear message, on a path a shell would misread
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
    environ = os.environ if environ is None else environ
    values = {}
    for f in dataclasses.fields(Settings):
        given = getattr(args, f.name, None)
        if given is None and _env(f) in environ:
            given = _kind(f)(environ[_env(f)])
        if given is not None:
            values[f.name] = given
    return Settings(**values)
