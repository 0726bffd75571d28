"""deploy/ (the kustomize base and its components, the bundle rendered from it, the networks, the example),
the Dockerfile and the agent's main process, checked without a cluster or root. The kustomize checks run
kubectl's built-in kustomize and skip without kubectl."""

from __future__ import annotations

import os
import shutil
import subprocess
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
AGENT = ROOT / "kube_vxlan_controller" / "agent.sh"

LABEL = "vxlan.openvnf.org"
ANNOTATION = "vxlan.openvnf.org/networks"
INIT_AGENT = "vxlan-controller-agent-init"
SIDECAR_AGENT = "vxlan-controller-agent"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
#: with the release tag wherever it is named (never an implicit :latest)
AGENT_IMAGE = f"openvnf/kube-vxlan-controller-agent:{VERSION}"

#: the seed README's example, in its multi-line annotation grammar
EXAMPLE_NETWORKS = {
    "a": "vxeth1\n  ip=192.168.11.2/29\n  route=192.168.12.0/29:192.168.11.1\n",
    "b": "vxeth2\n  ip=192.168.12.2/29\n  route=192.168.11.0/29:192.168.12.1\n",
    "gw": "vxeth1\n  ip=192.168.11.1/29\nvxeth2\n  ip=192.168.12.1/29\n",
}

#: exactly what the controller uses, cluster-wide (as (apiGroups, resources, verbs) sets)
EXPECTED_CLUSTER_RULES = {
    (frozenset({""}), frozenset({"pods"}), frozenset({"get", "list", "watch"})),
    (frozenset({""}), frozenset({"pods/status"}), frozenset({"patch"})),
    (frozenset({""}), frozenset({"pods/exec"}), frozenset({"create", "get"})),
    (frozenset({""}), frozenset({"events"}), frozenset({"create"})),
    (frozenset({"events.k8s.io"}), frozenset({"events"}), frozenset({"create"})),
}
EXPECTED_ROLE_RULES = {
    (frozenset({""}), frozenset({"configmaps"}), frozenset({"get", "list", "watch"})),
    (frozenset({"coordination.k8s.io"}), frozenset({"leases"}), frozenset({"create"})),
    (frozenset({"coordination.k8s.io"}), frozenset({"leases"}), frozenset({"get", "update", "list", "watch"})),
}
BROAD_ROLES = {"cluster-admin", "admin", "edit", "system:masters"}


def kustomize(directory: Path) -> str:
    """`kubectl kustomize DIRECTORY`: what `kubectl apply -k` would apply."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not found (it renders the kustomize base)")
    return subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True,
                          check=True).stdout


def with_component(tmp_path: Path, component: str) -> list[dict]:
    """The base with one of deploy/components/ added, as an overlay of a user's own adds it (kustomize takes
    relative paths only)."""
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(DEPLOY, tmp_path)],
        "components": [os.path.relpath(DEPLOY / "components" / component, tmp_path)]}))
    return [doc for doc in yaml.safe_load_all(kustomize(tmp_path)) if doc]


def load(name: str) -> list[dict]:
    with open(DEPLOY / name) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def rule_set(rules: list[dict]) -> set[tuple[frozenset, frozenset, frozenset]]:
    return {
        (frozenset(r.get("apiGroups", [])), frozenset(r.get("resources", [])), frozenset(r.get("verbs", [])))
        for r in rules
    }


def container(spec: dict, name: str, init: bool = False) -> dict:
    key = "initContainers" if init else "containers"
    found = [c for c in spec.get(key, []) if c["name"] == name]
    assert len(found) == 1, f"{key} {name}: found {len(found)}"
    return found[0]


# ---- every manifest --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(set(DEPLOY.glob("*.yaml")) - {DEPLOY / "kustomization.yaml"}),
                         ids=lambda p: p.name)
def test_every_document_is_a_current_api_object(path):
    docs = load(path.name)
    assert docs
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
        assert "v1beta1" not in doc["apiVersion"] and not doc["apiVersion"].startswith("extensions/")


def test_deploy_holds_the_install_the_bundle_the_networks_and_the_example():
    assert {p.name for p in DEPLOY.glob("*.yaml")} >= {"kustomization.yaml", "bundle.yaml", "networks.yaml",
                                                       "example.yaml"}


# ---- example.yaml ----------------------------------------------------------------------------------


def test_example_has_the_seeds_three_deployments():
    docs = load("example.yaml")
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == [
        ("Deployment", "a"),
        ("Deployment", "b"),
        ("Deployment", "gw"),
    ]
    for d in docs:
        assert d["apiVersion"] == "apps/v1"
        assert d["metadata"].get("namespace", "default") == "default"


@pytest.mark.parametrize("name", sorted(EXAMPLE_NETWORKS))
def test_example_deployment_is_vxlan_enabled(name):
    dep = one(load("example.yaml"), "Deployment", name)
    template = dep["spec"]["template"]
    labels = template["metadata"]["labels"]

    # apps/v1 wants a selector, and it must match the template (the seed selects with -l run=NAME)
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector == {"run": name}
    assert all(labels.get(k) == v for k, v in selector.items())

    assert labels[LABEL] == "true"  # a string, as label values must be
    assert template["metadata"]["annotations"][ANNOTATION] == EXAMPLE_NETWORKS[name]

    spec = template["spec"]
    for agent in (container(spec, INIT_AGENT, init=True), container(spec, SIDECAR_AGENT)):
        assert agent["image"] == AGENT_IMAGE
        assert "NET_ADMIN" in agent["securityContext"]["capabilities"]["add"]
    # the init agent is the only init container here, and the pod's own container is named as in the
    # seed's `kubectl exec -c a|b`
    assert [c["name"] for c in spec["initContainers"]] == [INIT_AGENT]
    main = container(spec, name)
    assert main["image"] and main.get("command")


def test_example_needs_no_ids_because_the_networks_configmap_has_them():
    data = one(load("networks.yaml"), "ConfigMap", "kube-vxlan-controller")["data"]
    for text in EXAMPLE_NETWORKS.values():
        assert "id=" not in text
        for line in text.splitlines():
            if line and not line[0].isspace():
                assert line in data


# ---- the install: kustomization.yaml, base/, and bundle.yaml rendered from them ---------------------
# bundle.yaml is checked to be `kubectl kustomize deploy` verbatim; the other checks read it.


def test_bundle_is_kubectl_kustomize_deploy_verbatim_under_its_comment():
    lines = (DEPLOY / "bundle.yaml").read_text().splitlines(keepends=True)
    header = [ln for ln in lines[:10] if ln.startswith("#")]
    assert header and "GENERATED by `make bundle`" in "".join(header)
    assert "".join(lines[len(header):]) == kustomize(DEPLOY), \
        "deploy/bundle.yaml differs from `kubectl kustomize deploy`: run `make bundle`"


def test_bundle_kinds():
    docs = load("bundle.yaml")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                            "Deployment", "PodDisruptionBudget", "Service"])
    for d in docs:
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"]["namespace"] == "kube-system", d["kind"]


def test_bundle_never_binds_broad_roles():
    for d in load("bundle.yaml"):
        if d["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            assert d["roleRef"]["name"] not in BROAD_ROLES
            assert d["roleRef"]["name"] == "kube-vxlan-controller"
            assert d["subjects"] == [
                {"kind": "ServiceAccount", "name": "kube-vxlan-controller", "namespace": "kube-system"}
            ]
    assert one(load("bundle.yaml"), "ClusterRoleBinding")["roleRef"]["kind"] == "ClusterRole"
    assert one(load("bundle.yaml"), "RoleBinding")["roleRef"]["kind"] == "Role"


def test_cluster_role_is_least_privilege():
    rules = one(load("bundle.yaml"), "ClusterRole", "kube-vxlan-controller")["rules"]
    for r in rules:
        assert "*" not in r.get("verbs", []) and "*" not in r.get("resources", [])
        assert "*" not in r.get("apiGroups", []) and "nonResourceURLs" not in r
    assert rule_set(rules) == EXPECTED_CLUSTER_RULES
    assert len(rules) == len(EXPECTED_CLUSTER_RULES)


def test_role_reads_configmaps_and_holds_only_its_own_lease_in_its_namespace():
    role = one(load("bundle.yaml"), "Role", "kube-vxlan-controller")
    assert role["metadata"]["namespace"] == "kube-system"
    assert rule_set(role["rules"]) == EXPECTED_ROLE_RULES
    names = {frozenset(r["verbs"]): r.get("resourceNames") for r in role["rules"] if r["resources"] == ["leases"]}
    # a create cannot be limited by name; everything else is about the one Lease (the --lease-name default)
    assert names == {frozenset({"create"}): None,
                     frozenset({"get", "update", "list", "watch"}): ["kube-vxlan-controller"]}


def test_network_configmap_as_in_the_seed_apart_from_the_install():
    (cm,) = load("networks.yaml")
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == \
        ("ConfigMap", "kube-vxlan-controller", "kube-system")
    assert cm["data"] == {f"vxeth{i}": f"id={100 + i} up" for i in range(4)}
    assert not [d for d in load("bundle.yaml") if d["kind"] == "ConfigMap"]


def test_the_budget_keeps_one_of_the_two_replicas_through_voluntary_disruptions():
    docs = load("bundle.yaml")
    pdb = one(docs, "PodDisruptionBudget", "kube-vxlan-controller")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {"run": "kube-vxlan-controller"}}}
    assert one(docs, "Deployment")["spec"]["replicas"] == 2


def test_the_metrics_service_names_the_pods_health_port():
    docs = load("bundle.yaml")
    svc = one(docs, "Service", "kube-vxlan-controller-metrics")
    assert svc["metadata"]["labels"]["app.kubernetes.io/component"] == "metrics"
    assert svc["spec"]["selector"] == {"run": "kube-vxlan-controller"}
    (port,) = svc["spec"]["ports"]
    assert (port["name"], port["targetPort"]) == ("metrics", "health")
    (c,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "health" in [p["name"] for p in c["ports"]]


def test_the_servicemonitor_component_scrapes_the_metrics_service(tmp_path):
    docs = with_component(tmp_path, "servicemonitor")
    monitor = one(docs, "ServiceMonitor", "kube-vxlan-controller")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "kube-system"
    svc = one(docs, "Service", "kube-vxlan-controller-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]


def test_the_priority_class_component_sets_the_controllers_priority(tmp_path):
    pod = one(with_component(tmp_path, "priority-class"), "Deployment")["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert "priorityClassName" not in one(load("bundle.yaml"), "Deployment")["spec"]["template"]["spec"]


def test_the_single_replica_component_runs_one_and_drops_the_budget_that_would_block_drains(tmp_path):
    docs = with_component(tmp_path, "single-replica")
    assert one(docs, "Deployment")["spec"]["replicas"] == 1
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert len(docs) == len(load("bundle.yaml")) - 1


def test_controller_deployment():
    docs = load("bundle.yaml")
    dep = one(docs, "Deployment", "kube-vxlan-controller")
    assert dep["apiVersion"] == "apps/v1"
    spec = dep["spec"]
    # two replicas, one leading; a rollout keeps one running and waits for the new one to be Ready
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    # the seed's commands find the controller with -l run=kube-vxlan-controller
    assert spec["selector"]["matchLabels"] == {"run": "kube-vxlan-controller"}
    assert spec["template"]["metadata"]["labels"]["run"] == "kube-vxlan-controller"

    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    assert pod["terminationGracePeriodSeconds"] == 20
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    assert len(pod["containers"]) == 1
    c = pod["containers"][0]
    assert c["args"] == ["run"]
    assert c["image"].startswith("openvnf/kube-vxlan-controller:")
    env = {e["name"]: e for e in c["env"]}
    assert env["KVC_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"

    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in c["ports"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert set(c["resources"]["requests"]) == {"cpu", "memory"}
    assert set(c["resources"]["limits"]) == {"cpu", "memory"}


#: Pod Security Standards, baseline: the only capabilities a container may add
BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
#: restricted: the only volume types
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def test_controller_pod_meets_the_restricted_pod_security_standard():
    pod = one(load("bundle.yaml"), "Deployment", "kube-vxlan-controller")["spec"]["template"]["spec"]
    assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"))
    assert all(set(v) - {"name"} <= RESTRICTED_VOLUMES for v in pod.get("volumes", []))
    assert "sysctls" not in pod.get("securityContext", {})
    for c in pod["containers"] + pod.get("initContainers", []):
        effective = {**pod.get("securityContext", {}), **c["securityContext"]}  # the container's wins
        assert effective["runAsNonRoot"] is True
        assert effective["runAsUser"] == 65532
        assert effective["readOnlyRootFilesystem"] is True
        assert effective["allowPrivilegeEscalation"] is False
        assert effective["capabilities"] == {"drop": ["ALL"]}
        assert effective["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not effective.get("privileged") and "procMount" not in effective
        assert not any(p.get("hostPort") for p in c.get("ports", []))


def test_the_example_agents_need_the_privileged_standard_for_net_admin():
    for dep in load("example.yaml"):
        spec = dep["spec"]["template"]["spec"]
        added = {cap for c in spec["containers"] + spec.get("initContainers", [])
                 for cap in c.get("securityContext", {}).get("capabilities", {}).get("add", [])}
        assert added - BASELINE_CAPABILITIES == {"NET_ADMIN"}, dep["metadata"]["name"]


# ---- Dockerfile ------------------------------------------------------------------------------------


def test_dockerfile_default_target_is_the_controller():
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()]
    stages = [ln.split()[-1] for ln in lines if ln.upper().startswith("FROM ")]
    assert "agent" in stages
    assert stages[-1] == "controller"  # the last stage is what `docker build .` produces
    last = lines[max(i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")) :]
    assert any(ln.startswith("USER ") and "0" != ln.split()[1].split(":")[0] for ln in last)
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "kube-vxlan-controller"]' in last
    assert 'CMD ["run"]' in last


# ---- kube_vxlan_controller/agent.sh --------------------------------------------------------------------------------

SHELLS = [s for s in ("bash", "sh") if shutil.which(s)]


def _default_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def start_agent(shell: str, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    terminate = tmp_path / "terminate"
    proc = subprocess.Popen(
        [shell, str(AGENT)],
        env={**os.environ, "AGENT_TERMINATE_FILE": str(terminate)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # as in a container: no signal ignored on entry. A shell cannot trap a signal ignored when it
        # started, and a test run started in the background (`cmd &` without job control) ignores INT.
        preexec_fn=_default_signals,
    )
    # the script prints this after installing its traps: from here on TERM is handled
    assert "waiting for TERM" in proc.stdout.readline()
    return proc, terminate


def stop(proc: subprocess.Popen, deadline: float = 5.0) -> int:
    try:
        return proc.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"agent did not exit within {deadline} s")


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_agent_exits_0_on_signal(shell, sig, tmp_path):
    proc, _ = start_agent(shell, tmp_path)
    time.sleep(0.2)  # well inside `wait` for the background sleep
    started = time.monotonic()
    proc.send_signal(sig)
    assert stop(proc) == 0
    assert time.monotonic() - started < 2.0  # promptly, not after the sleep finished
    assert "exiting" in proc.stdout.read()


@pytest.mark.parametrize("shell", SHELLS)
def test_agent_exits_0_when_the_terminate_file_appears(shell, tmp_path):
    proc, terminate = start_agent(shell, tmp_path)
    time.sleep(0.3)
    assert proc.poll() is None  # still waiting
    terminate.touch()
    assert stop(proc) == 0


@pytest.mark.parametrize("shell", SHELLS)
def test_agent_ignores_a_stale_terminate_file(shell, tmp_path):
    (tmp_path / "terminate").touch()  # left from an earlier run
    proc, _ = start_agent(shell, tmp_path)
    time.sleep(1.5)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert stop(proc) == 0
