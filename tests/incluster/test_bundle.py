"""The install as a user applies it: `kubectl apply -k deploy`, `kubectl apply -f deploy/networks.yaml`,
`kubectl create -f deploy/example.yaml`, and the controller runs in its two pods from its image, with in-cluster config and
exactly the bundle's roles: one leads (the Lease names it) and wires the seed's example, the other
stands by; the seed's operator commands, verbatim, in the leader's pod; hand-overs on TERM and on the
leader pod's deletion.

Every fact is read through kubectl: fdb entries from `bridge -j fdb show` in each pod's agent
container, pings from the app containers, the controller's state from `kubectl get`, its log from
`kubectl logs`. The tests of this module run in order on one deployment (module fixture `deployed`);
each leaves the example converged for the next.
"""

from __future__ import annotations

import json
import re
import shlex
import time

import pytest
from clusters import ROOT
from polling import wait_for
from seedexample import AGENT, NS, Deployed

from kube_vxlan_controller import __version__

pytestmark = pytest.mark.root

@pytest.fixture(scope="module")
def deployed(cluster):
    d = Deployed(cluster)
    out = d.kubectl("apply", "-k", str(ROOT / "deploy"))
    assert "deployment.apps/kube-vxlan-controller" in out.stdout, out.stdout
    d.kubectl("apply", "-f", str(ROOT / "deploy" / "networks.yaml"))
    d.kubectl("create", "-f", str(ROOT / "deploy" / "example.yaml"))
    d.wait_exact("the example wired by the in-cluster controller")
    yield d
    d.kubectl("delete", "-f", str(ROOT / "deploy" / "example.yaml"), "--wait=false", check=False)
    d.kubectl("delete", "-k", str(ROOT / "deploy"), "--wait=false", check=False)
    d.kubectl("delete", "-f", str(ROOT / "deploy" / "networks.yaml"), "--wait=false", check=False)


def test_two_replicas_run_from_the_image_one_leads_the_other_stands_by_ready(deployed):
    pods = wait_for(lambda: len(c := deployed.controllers()) == 2 and all(map(deployed.ready, c)) and c,
                    timeout=90, what="two controller pods, both Ready (the standby too, from /readyz)")
    for pod in pods:
        (status,) = pod["status"]["containerStatuses"]
        assert status["image"].endswith("openvnf/kube-vxlan-controller:0.1.0")
        assert status["restartCount"] == 0
    leader = deployed.leader()["metadata"]["name"]
    (standby,) = [p["metadata"]["name"] for p in pods if p["metadata"]["name"] != leader]
    holder = deployed.holder()
    assert re.fullmatch(rf"{leader}_[0-9a-f-]{{36}}", holder), holder  # the hostname is the pod's name
    log = deployed.logs(leader)
    assert re.search(r"Kubernetes API at https://\S+ \(controller namespace kube-system\)", log), log
    assert "became leader" in log and "Watching pods (selector:" in log
    standing_by = deployed.logs(standby)
    assert f"leader is {holder}" in standing_by and "Watching pods" not in standing_by, standing_by
    assert re.search(r"^kvc_leader 1\.0$", deployed.metrics(leader), re.MULTILINE)
    assert re.search(r"^kvc_leader 0\.0$", deployed.metrics(standby), re.MULTILINE)
    assert f'kvc_build_info{{version="{__version__}"}} 1.0' in deployed.metrics(standby)
    deployed.pings()


def test_seed_operator_commands_verbatim_in_the_leaders_pod_and_the_standby_says_who_leads(deployed):
    pod = deployed.leader_name()
    assert pod
    inspect = deployed.kubectl("-n", NS, "exec", pod, "--", "kube-vxlan-controller", "inspect", "nets", "vxeth1",
                               "vxeth2").stdout
    gw = deployed.pod("gw")
    assert f" pod: default/{gw['metadata']['name']} {gw['status']['podIP']}" in inspect, inspect
    assert re.search(r" net: dev:eth0 id:101 ip:192\.168\.11\.1/29 name:vxeth1 type:vxlan up:true", inspect), inspect
    assert re.search(r" fdb: 00:00:00:00:00:00 dst \S+ self permanent", inspect), inspect
    listed = deployed.kubectl("-n", NS, "exec", pod, "--", "kube-vxlan-controller", "list", "pods", "gw").stdout
    assert listed.splitlines() == [f"default/{gw['metadata']['name']} vxeth1 192.168.11.1/29",
                                   f"default/{gw['metadata']['name']} vxeth2 192.168.12.1/29"], listed
    (standby,) = [p["metadata"]["name"] for p in deployed.controllers() if p["metadata"]["name"] != pod]
    asked = deployed.kubectl("-n", NS, "exec", standby, "--", "kube-vxlan-controller", "list", "pods", "gw",
                             check=False)
    assert asked.returncode == 4, asked
    assert f"the leader is {deployed.holder()}: ask it, in its pod" in asked.stderr, asked.stderr
    # the command it says, on a line of its own (kubectl exec adds "command terminated…" after it), pasted
    pasted = shlex.split(next(line for line in asked.stderr.splitlines() if line.startswith("kubectl ")))
    assert pasted[:5] == ["kubectl", "-n", NS, "exec", pod], asked.stderr
    assert deployed.kubectl(*pasted[1:]).stdout == listed


def test_kill_term_1_in_the_leader_hands_over_and_the_new_leader_repairs_what_changed_meanwhile(deployed):
    pod = deployed.leader()
    name = pod["metadata"]["name"]
    # Before the hand-over, an fdb entry removed by hand in b: the leader does not look before its next
    # resync (minutes away), and the new leader must find it in its first read. (Removed after the TERM,
    # it could land after that read: the standby takes over within milliseconds.)
    b = deployed.pod("b")["metadata"]["name"]
    gw_ip = deployed.pod("gw")["status"]["podIP"]
    deployed.kubectl("exec", b, "-c", AGENT, "--", "bridge", "fdb", "del", "00:00:00:00:00:00", "dev", "vxeth2",
                     "dst", gw_ip)
    started = time.monotonic()
    deployed.kubectl("-n", NS, "exec", name, "--", "kill", "-TERM", "1", check=False)
    # Meanwhile: pod a deleted (its Deployment makes a new one).
    deployed.kubectl("delete", "pod", deployed.pod("a")["metadata"]["name"], "--wait=false")
    wait_for(lambda: deployed.leader_name() not in ("", name), timeout=30, what="the standby leading")
    took = time.monotonic() - started
    restarted = wait_for(lambda: next((p for p in deployed.controllers() if p["metadata"]["name"] == name
                                       and p["status"]["containerStatuses"][0]["restartCount"] == 1
                                       and "running" in p["status"]["containerStatuses"][0]["state"]), None),
                         timeout=60, what="the old leader's container restarted")
    (status,) = restarted["status"]["containerStatuses"]
    assert status["lastState"]["terminated"]["exitCode"] == 0, status
    assert restarted["metadata"]["uid"] == pod["metadata"]["uid"]
    previous = deployed.logs(name, "--previous")
    assert "received SIGTERM" in previous and "controller stopped" in previous and "released" in previous, previous
    wait_for(lambda: "leader is " in deployed.logs(name), timeout=30, what="the restarted one standing by")
    seconds = deployed.wait_exact("exact again under the new leader")
    print(f"\nTERM in the leader: the standby led {took:.1f}s after the kill was sent (kubectl's view); the old "
          f"one restarted (exit 0) as a standby; exact again {seconds:.1f}s later")
    deployed.pings()


def test_deleting_the_leaders_pod_hands_over_and_the_deployment_makes_a_new_standby(deployed):
    old = deployed.leader()
    deployed.kubectl("-n", NS, "delete", "pod", old["metadata"]["name"], "--wait=false")
    b = deployed.pod("b")["metadata"]["name"]
    deployed.kubectl("delete", "pod", b, "--wait=false")
    wait_for(lambda: deployed.leader_name() not in ("", old["metadata"]["name"]), timeout=30,
             what="the standby leading")
    pods = wait_for(lambda: len(c := deployed.controllers()) == 2 and all(map(deployed.ready, c))
                    and old["metadata"]["uid"] not in {p["metadata"]["uid"] for p in c} and c,
                    timeout=90, what="the Deployment's next controller pod, Ready beside the new leader")
    new = [p for p in pods if p["metadata"]["name"] != deployed.leader_name()]
    assert [p["status"]["containerStatuses"][0]["restartCount"] for p in new] == [0]
    deployed.wait_exact("exact again under the new leader")
    deployed.pings()


def _patch_clusterrole(deployed, rules: list[dict]) -> None:
    deployed.kubectl("patch", "clusterrole", "kube-vxlan-controller", "--type", "merge", "-p",
                     json.dumps({"rules": rules}))


def _bundle_rules(deployed) -> list[dict]:
    return deployed.cluster.json("get", "clusterrole", "kube-vxlan-controller")["rules"]


def test_without_pods_exec_it_says_what_is_missing_and_converges_once_restored(deployed):
    full = _bundle_rules(deployed)
    controller = deployed.leader()
    name = controller["metadata"]["name"]
    restarts = controller["status"]["containerStatuses"][0]["restartCount"]
    _patch_clusterrole(deployed, [r for r in full if "pods/exec" not in r["resources"]])
    try:
        a = deployed.pod("a")["metadata"]["name"]
        deployed.kubectl("delete", "pod", a, "--wait=false")
        new_a = wait_for(lambda: (p := deployed.pod("a")) is not None and p["metadata"]["name"] != a
                         and p["metadata"]["name"], timeout=60, what="a new pod a")
        line = wait_for(lambda: [l for l in deployed.logs(name).splitlines()
                                 if "lacks a permission" in l and f"default/{new_a}" in l],
                        timeout=60, what="the log line naming the missing permission")
        assert len(line) == 1, line
        assert 'cannot create resource "pods/exec"' in line[0], line
        assert re.search(r'kvc_reconcile_errors_total\{kind="forbidden"\} [1-9]', deployed.metrics(name))
        events = deployed.cluster.json("get", "events", "--field-selector", f"involvedObject.name={new_a}")
        assert [e["reason"] for e in events["items"]].count("VxlanForbidden") == 1, [(e["reason"], e["message"], e["firstTimestamp"]) for e in events["items"]]
        assert not deployed.exact()
    finally:
        _patch_clusterrole(deployed, full)
    deployed.wait_exact("exact again once pods/exec is granted")
    assert deployed.leader()["status"]["containerStatuses"][0]["restartCount"] == restarts, "no restart needed"
    print("\nRBAC denial line: " + line[0])


def test_without_events_create_it_still_wires_pods(deployed):
    full = _bundle_rules(deployed)
    name = deployed.leader()["metadata"]["name"]
    _patch_clusterrole(deployed, [r for r in full if "events" not in r["resources"]])
    try:
        # an Event the controller wants to record: a pod with a bad network option
        deployed.kubectl("patch", "deployment", "b", "--type", "merge", "-p", json.dumps(
            {"spec": {"template": {"metadata": {"annotations": {
                "vxlan.openvnf.org/networks": "vxeth2\n  ip=192.168.12.2/29\n  route=192.168.11.0/29:192.168.12.1\n"
                                              "vxeth3\n  id=abc\n"}}}}}))
        wait_for(lambda: "cannot record Events" in deployed.logs(name), timeout=90,
                 what="the log line saying Events cannot be recorded")
        deployed.wait_exact("the example wired without events create")
    finally:
        _patch_clusterrole(deployed, full)
    assert deployed.logs(name).count("cannot record Events") == 1
