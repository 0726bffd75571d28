"""`kube-vxlan-controller plan`: what the controller would run in a pod — running nothing.

    kube-vxlan-controller plan [--pod-namespace NS] NAME                # a pod of the cluster
    kube-vxlan-controller plan -f FILE [NAME] [--configmap FILE]       # a manifest: a Pod, or a workload's
                                                                        # pod template (NAME picks the document)

It prints the networks the pod's annotation resolves to under the network ConfigMap (with every option
as resolved), every validation error, and the exact execs the controller would run for a pod nobody set
up: in the init agent the setup batch and the release (one exec), in the sidecar the fdb batch (with
`--sessions on`, the default: the session opened, and the batch as its first request). They are built by
the functions the controller itself uses (`options.resolve`, `agent.setup_exec`, `agent.fdb_diff`,
`agent.batch_argv`, `agentsession`), so the plan cannot drift from what runs. The controller's settings (flags and `KVC_*`
variables, as for `run`) decide names, timeouts and the terminate file.

Online (the pod or the ConfigMap comes from the cluster) the fdb batch holds the peers the cluster has
now: the IPs of the other pods whose sidecar runs and whose annotation names the network validly. Offline
(`-f FILE --configmap FILE`: no API call at all) the peers are unknown: the batch shows one marked
placeholder line per network instead. Output: text for people, `-o json` for machines.

Flags mean what they mean for `run` (`--namespace` is the controller's, where the ConfigMap lives); the
pod's namespace is `--pod-namespace`, and no flag is `-n`, which kubectl users would read either way.

Exit codes: 0 the pod is fine, 1 validation errors (a network that does not resolve, a missing opt-in
label or agent container), 2 usage or unreadable input (a file, a pod that is not there), 3 the cluster
cannot be reached (the message points to planning offline).
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import yaml

from . import agent, agentsession, eligibility, options, settings as settings_module
from .failures import CANNOT_START, USAGE_ERROR, Failure, Parser
from .k8s import client, configmaps, pods
from .k8s.errors import K8sError, PodGone
from .logs import setup as setup_logs
from .model import Pod
from .settings import Settings

OK, INVALID, USAGE, UNREACHABLE = 0, 1, USAGE_ERROR, CANNOT_START
#: kinds whose `spec.template` is a pod template
WORKLOADS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController")
#: what stands for a peer's IP in an offline fdb batch
PEER_PLACEHOLDER = "<PEER-IP>"
#: the address an offline plan's batch is built with, then shown as PEER_PLACEHOLDER (RFC 5737's TEST-NET-1:
#: the batch passes the same checks as a real one)
_STAND_IN = "192.0.2.1"


class InputError(Exception):
    """The input cannot be read or does not say which pod (exit 2)."""


@dataclass(frozen=True, slots=True)
class Exec:
    """One exec the controller would run."""

    container: str
    argv: list[str]
    stdin: str | None
    #: when it runs, in words
    when: str
    #: what follows from its outcome, in words
    note: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    source: str
    pod_key: str
    networks: tuple[options.NetworkSpec, ...]
    errors: tuple[str, ...]
    execs: tuple[Exec, ...]
    #: network → peer IPs (online); None: unknown (offline)
    peers: Mapping[str, tuple[str, ...]] | None = field(default=None)


# -- input ------------------------------------------------------------------------------------------


def _documents(path: str) -> list[dict]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        docs = [doc for doc in yaml.safe_load_all(text) if doc]
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"cannot read {path}: {error}") from None
    out: list[dict] = []
    for doc in docs:
        if not isinstance(doc, dict):
            raise InputError(f"{path}: a document is not a Kubernetes object")
        out += [item for item in doc.get("items") or [] if isinstance(item, dict)] if doc.get("kind") == "List" \
            else [doc]
    return out


def pods_in(docs: list[dict]) -> list[tuple[str, dict]]:
    """(what it is, the pod as `pod_from_json` reads it) for every Pod and workload pod template."""
    found = []
    for doc in docs:
        kind, meta = doc.get("kind"), doc.get("metadata") or {}
        where = f"{meta.get('namespace') or 'default'}/{meta.get('name', '?')}"
        template = None
        if kind in WORKLOADS:
            template = (doc.get("spec") or {}).get("template")
        elif kind == "CronJob":
            template = (((doc.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template")
        if kind == "Pod":
            pod = dict(doc)
            pod["metadata"] = {**meta, "namespace": meta.get("namespace") or "default"}
            found.append((f"Pod {where}", pod))
        elif isinstance(template, dict):
            template_meta = template.get("metadata") or {}
            pod = {"metadata": {**template_meta, "namespace": meta.get("namespace") or "default",
                                "name": meta.get("name", "?")}, "spec": template.get("spec") or {}}
            found.append((f"the pod template of {kind} {where}", pod))
    return found


def pick_pod(path: str, name: str | None) -> tuple[str, dict]:
    candidates = pods_in(_documents(path))
    if name is not None:
        candidates = [c for c in candidates if c[1]["metadata"].get("name") == name]
    if len(candidates) != 1:
        if not candidates:
            raise InputError(f"{path}: no Pod or pod template{f' named {name!r}' if name else ''}")
        names = ", ".join(repr(c[1]["metadata"]["name"]) for c in candidates)
        raise InputError(f"{path} holds several pods ({names}): name one (plan -f FILE NAME)")
    what, pod = candidates[0]
    return f"{what} ({path})", pod


def configmap_data(path: str, name: str) -> Mapping[str, str]:
    """The data of the ConfigMap in the file: the only one, or the one named `name`."""
    maps = [doc for doc in _documents(path) if doc.get("kind") == "ConfigMap"]
    if len(maps) > 1:
        maps = [doc for doc in maps if (doc.get("metadata") or {}).get("name") == name]
    if len(maps) != 1:
        raise InputError(f"{path}: no ConfigMap{' named ' + repr(name) if not maps else 's: more than one named ' + repr(name)}")
    return configmaps.json_data(maps[0])


# -- the plan ---------------------------------------------------------------------------------------


def pod_errors(pod: Pod, resolution: options.Resolution, s: Settings) -> list[str]:
    """What keeps the controller from wiring the pod, beyond its networks' options: the causes the running
    controller tells in Events and the Wired condition (`eligibility`), in the same words."""
    return [f"pod {pod.key}: {cause.message}" for cause in eligibility.causes(pod, resolution, s)]


def peers_in(raw_pods: list[dict], configmap: Mapping[str, str], s: Settings, *, but: str) -> dict[str, set[str]]:
    """network → the IPs of its members among `raw_pods` (label "true", `Pod.joinable`, the network
    resolved: the watcher's and network actors' rules), leaving out the pod `but` (a UID)."""
    peers: dict[str, set[str]] = {}
    for raw in raw_pods:
        pod = pods.pod_from_json(raw, init_container=s.init_agent, agent_container=s.agent)
        if pod.uid == but or not eligibility.opted_in(pod, s) or not pod.joinable:
            continue
        for spec in options.resolve(pod.annotations.get(s.annotation), configmap, pod_key=pod.key).networks:
            if (ip := spec.underlay_ip(pod.addresses)) is not None:
                peers.setdefault(spec.network, set()).add(ip)
    return peers


def make_plan(source: str, raw: dict, configmap: Mapping[str, str], s: Settings,
              peers: Mapping[str, set[str]] | None) -> Plan:
    """The plan for the pod `raw` (as the API writes it, or a manifest's); `peers` None: offline."""
    pod = pods.pod_from_json(raw, init_container=s.init_agent, agent_container=s.agent)
    resolution = options.resolve(pod.annotations.get(s.annotation), configmap, pod_key=pod.key)
    specs = resolution.networks
    timeout = agent.in_pod_timeout(s.exec_deadline)
    argv, batch = agent.setup_exec(specs, None, timeout=timeout, terminate_file=s.terminate_file,
                                    pod_ips=pod.addresses)
    execs = [Exec(s.init_agent, argv, batch, "while the init agent runs: set up and release it, in one exec",
                  "" if batch is None else f"exit {agent.LINKS_EXIST} (a line failed: an interface exists already, or another error; "
                  "the batch stopped there): "
                  f"the controller reads `{shlex.join(agent.LINKS_ARGV)}` and runs the batch computed from what "
                  "it finds instead")]
    fresh = {spec.name: frozenset() for spec in specs}
    if peers is None:
        fdb = agent.FdbDiff(add=tuple((spec.name, _STAND_IN) for spec in specs)).batch()
    else:
        fdb = agent.fdb_diff({spec.name: peers.get(spec.network, set()) for spec in specs}, fresh).batch()
    if fdb and s.sessions == "on":
        first = agentsession.carried("fdb", fdb)
        if first is None:
            argv, request = agentsession.session_argv(timeout), agentsession.request(1, "fdb", fdb)
        else:
            argv, request = agentsession.session_argv(timeout, (1, first)), None
        execs.append(Exec(s.agent, [arg.replace(_STAND_IN, PEER_PLACEHOLDER) for arg in argv],
                          request and request.replace(_STAND_IN, PEER_PLACEHOLDER),
                          "once the sidecar runs: a session into it (one exec, kept open for every later "
                          "change), its first request one flood entry per peer"
                          + (", carried by the opening" if first is not None else "")))
    elif fdb:
        execs.append(Exec(s.agent, agent.batch_argv("bridge", timeout), fdb.replace(_STAND_IN, PEER_PLACEHOLDER),
                          "once the sidecar runs: one flood entry per peer"))
    known = None if peers is None else {spec.network: tuple(sorted(peers.get(spec.network, ()), key=agent.ip_order))
                                        for spec in specs}
    errors = tuple(pod_errors(pod, resolution, s)) + resolution.errors
    return Plan(source, pod.key, specs, errors, tuple(execs), known)


# -- output -----------------------------------------------------------------------------------------


def render_text(plan: Plan) -> str:
    out = [f"pod {plan.pod_key}: {plan.source}", "", "networks:"]
    out += [f"  {spec.network}: {spec.describe()}" for spec in plan.networks] or ["  none"]
    out += ["", "errors:"]
    out += [f"  {error}" for error in plan.errors] or ["  none"]
    if plan.peers is not None and plan.networks:
        out.append("")
        out += [f"peers of {spec.network}: {' '.join(plan.peers.get(spec.network, ())) or 'none yet'}"
                for spec in plan.networks]
    for run in plan.execs:
        out += ["", f"exec in {run.container} ({run.when}):", f"  {shlex.join(run.argv)}"]
        if run.stdin is not None:
            out.append("  stdin:")
            out += [f"    {line}" for line in run.stdin.splitlines()]
        if run.note:
            out.append(f"  then, on {run.note}")
    if plan.peers is None and plan.networks:
        out += ["", f"offline: the peers are unknown; {PEER_PLACEHOLDER} stands for each member's pod IP (one line "
                    "per peer; a pod alone in its networks gets no fdb exec)"]
    if len(plan.execs) == 1 and plan.networks and plan.peers is not None:
        out += ["", "no fdb exec yet: no other member of its networks runs its sidecar"]
    return "\n".join(out) + "\n"


def render_json(plan: Plan) -> str:
    return json.dumps({
        "pod": plan.pod_key, "source": plan.source,
        "networks": [{"network": spec.network, "interface": spec.name, "options": spec.describe()}
                     for spec in plan.networks],
        "errors": list(plan.errors),
        "peers": None if plan.peers is None else {net: list(ips) for net, ips in plan.peers.items()},
        "execs": [{"container": run.container, "argv": run.argv, "stdin": run.stdin, "when": run.when,
                   "note": run.note} for run in plan.execs],
    }, indent=1) + "\n"


# -- the command ------------------------------------------------------------------------------------


def parser() -> Parser:
    p = Parser(
        prog="kube-vxlan-controller plan", conflict_handler="resolve",
        description="Show what the controller would run in a pod (networks, errors, the execs with their "
                    "batches), running nothing. Online with a pod NAME or without --configmap FILE; offline "
                    "with -f FILE and --configmap FILE.",
        epilog="The controller's settings below (as for `run`, also as KVC_* variables) decide names and "
               "timeouts. Exit codes: 0 fine, 1 validation errors, 2 usage or input, 3 cluster unreachable.")
    settings_module.add_arguments(p)
    p.add_argument("name", nargs="?", metavar="NAME", help="the pod (with -f: the document's name, when several)")
    p.add_argument("--pod-namespace", default="default", metavar="NS",
                   help="the pod's namespace (default: default; --namespace is the controller's, as for run)")
    p.add_argument("-f", "--filename", metavar="FILE", help="a manifest (YAML, several documents allowed; '-': "
                                                            "stdin): a Pod, or a Deployment… whose pod template")
    p.add_argument("--configmap", metavar="FILE", dest="configmap_file",
                   help="the network ConfigMap from a file (else from the cluster: KVC_CONFIGMAP in --namespace)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    return p


def main(argv: list[str]) -> int:
    p = parser()
    args = p.parse_args(argv)
    if (args.filename is None) == (args.name is None) and args.filename is None:
        raise Failure("name a pod, or give a manifest with -f FILE (see kube-vxlan-controller plan --help)", USAGE)
    s = settings_module.from_arguments(args)
    setup_logs("WARNING")
    try:
        return _plan(args, s)
    except InputError as error:
        raise Failure(str(error), USAGE) from error


def _plan(args, s: Settings) -> int:
    online = args.filename is None or args.configmap_file is None
    cluster = None
    try:
        if online:
            cluster = client.connect(s.kubeconfig, namespace=s.namespace)
        if args.filename is not None:
            source, raw = pick_pod(args.filename, args.name)
        else:
            try:
                raw = pods.read_pod_json(cluster, args.pod_namespace, args.name)
            except PodGone:
                raise InputError(f"pod {args.pod_namespace}/{args.name} not found") from None
            source = "from the cluster"
        if args.configmap_file is not None:
            configmap = configmap_data(args.configmap_file, s.configmap)
            source += f"; networks from ConfigMap {args.configmap_file}"
        else:
            configmap = configmaps.read_configmap(cluster, s.configmap, s.namespace)
            source += f"; networks from ConfigMap {s.namespace}/{s.configmap}"
        peers = None
        if cluster is not None:
            uid = (raw.get("metadata") or {}).get("uid", "")
            peers = peers_in(pods.list_pods_json(cluster, s.selector, s.watch_namespace), configmap, s, but=uid)
    except K8sError as error:
        offline = ("-f FILE --configmap FILE" if args.filename is None
                   else "--configmap FILE (the network ConfigMap's manifest)")
        raise Failure(f"cannot reach the cluster: {error}; without a cluster, plan offline with {offline}",
                      UNREACHABLE) from error
    finally:
        if cluster is not None:
            cluster.close()
    plan = make_plan(source, raw, configmap, s, peers)
    print(render_json(plan) if args.output == "json" else render_text(plan), end="")
    return INVALID if plan.errors else OK
