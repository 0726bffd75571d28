"""Two controller processes on one sandbox, as the bundle's two replicas (root): exactly one leads, the
other stands by and says who leads; the leader's SIGKILL or SIGTERM hands over; a leader that cannot
renew stops exec'ing before its Lease could expire; and never do two exec at once.

Each replica has a ServiceAccount of its own, bound to the bundle's roles, so the sandbox counts its
execs by user (`/sandbox/stats`: `by_user`, `most_users_at_once`); in a cluster both share one. Times
are measured on a watch of the Lease from this process (arrival times, bench/takeover.py's LeaseLog)
and printed; asserted with deadlines only. Short leases keep it quick: 5 s lease, 4 s renew deadline, 0.5 s retry, 2 s execs (the
SIGTERM test runs client-go's defaults, 15/10/2 s, since its bound must hold for them).
"""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest
import yaml
from apihelpers import service_account_token
from kubernetes import config as k8s_config
from kubernetes.utils import create_from_dict

from bench.takeover import LeaseLog
from kvc_sandbox.runner import kubeconfig_text
from polling import wait_for

from .conftest import ROOT, Cluster
from .test_controller import NET
from .test_operations import cli, free_port

pytestmark = pytest.mark.root

NS, LEASE_NAME = "kube-system", "kube-vxlan-controller"
LEASE, RENEW, RETRY, EXEC = 5, 4.0, 0.5, 2.0
SHORT = ("--lease-duration", str(LEASE), "--renew-deadline", str(RENEW), "--retry-period", str(RETRY),
         "--exec-deadline", str(EXEC))
#: slack for this machine (2 cores shared with other suites) between a deadline and its measurement
SLACK = 0.5


@dataclass
class Replica:
    name: str
    proc: object
    admin: str
    health: str

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{NS}:kvc-{self.name}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{self.health}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str) -> float | None:
        match = re.search(rf"^{name} (\S+)$", self.get("/metrics")[1], re.MULTILINE)
        return float(match.group(1)) if match else None

    def ready(self) -> bool:
        return self.get("/readyz")[0] == 200

    def log(self) -> str:
        return open(self.proc.log_path).read()


def stats(cluster: Cluster) -> dict:
    with urllib.request.urlopen(f"{cluster.sandbox.url}/sandbox/stats", timeout=5) as response:
        return json.loads(response.read())["execs"]


@pytest.fixture
def replicas(sandbox, cluster, controller_process, tmp_path):
    """start(name, *flags) → a Replica: a controller process with ServiceAccount kvc-NAME (the bundle's
    roles), identity NAME, its own admin and health ports; and `lease`, the LeaseLog."""
    bundle = [d for d in yaml.safe_load_all((ROOT / "deploy" / "bundle.yaml").read_text()) if d]
    admin_client = k8s_config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    subjects = [{"kind": "ServiceAccount", "name": f"kvc-{n}", "namespace": NS} for n in "ab"]
    for doc in bundle:
        if doc["kind"] in ("ClusterRole", "Role"):
            create_from_dict(admin_client, doc)
        elif doc["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            create_from_dict(admin_client, {**doc, "subjects": subjects})
    for subject in subjects:
        cluster.core.create_namespaced_service_account(NS, {"metadata": {"name": subject["name"]}})
    lease = LeaseLog(admin_client)

    def start(name: str, *flags: str) -> Replica:
        kubeconfig = tmp_path / f"{name}.kubeconfig"
        kubeconfig.write_text(kubeconfig_text(sandbox.url, token=service_account_token(sandbox, NS, f"kvc-{name}")))
        admin, health = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        proc = controller_process("--identity", name, "--admin", admin, "--health", health, *flags,
                                  kubeconfig=kubeconfig)
        return Replica(name, proc, admin, health)

    start.lease = lease
    yield start
    lease.stop()
    admin_client.close()


def two_replicas(replicas, *flags: str) -> tuple[Replica, Replica]:
    """Both started at once; (leader, standby) once both are Ready and the Lease names one of them."""
    both = {r.name: r for r in (replicas("a", *flags), replicas("b", *flags))}
    holder = wait_for(lambda: replicas.lease.holder() in both and replicas.lease.holder(), timeout=30,
                      what="a holder of the Lease")
    wait_for(lambda: all(r.ready() for r in both.values()), timeout=30, what="both replicas Ready")
    leader, standby = both[holder], both["b" if holder == "a" else "a"]
    return leader, standby


def test_of_two_replicas_exactly_one_leads_and_a_sigkill_hands_over_within_lease_plus_retry(cluster, replicas):
    leader, standby = two_replicas(replicas, *SHORT)
    assert (leader.metric("kvc_leader"), standby.metric("kvc_leader")) == (1.0, 0.0)
    asked = cli("list", "pods", "--admin", standby.admin)
    assert asked.returncode == 4, asked
    assert f"is not the leader (standby, {standby.name}); the leader is {leader.name}" in asked.stderr
    assert asked.stderr.splitlines()[-1] == (f"kubectl -n {NS} exec {leader.name} -- kube-vxlan-controller list pods "
                                             f"--admin {standby.admin}"), asked.stderr
    assert cli("list", "pods", "--admin", leader.admin).returncode == 0
    cluster.create_deployment("k", NET, replicas=2)
    wait_for(lambda: len(cluster.running("run=k")) == 2 and cluster.wired(cluster.running("run=k"), NET),
             timeout=60, what="2 pods wired by the leader")
    assert stats(cluster)["by_user"].keys() == {leader.user}, "the standby execs nothing"

    killed = time.monotonic()
    leader.proc.send_signal(signal.SIGKILL)
    leader.proc.wait(timeout=10)
    cluster.scale("k", 3)  # a pod created after the leader died
    taken = wait_for(lambda: replicas.lease.first(standby.name, after=killed), timeout=LEASE + RETRY + 10,
                     what="the standby holding the Lease")
    renewed = replicas.lease.last(leader.name, before=killed)
    wait_for(lambda: len(cluster.running("run=k")) == 3 and cluster.wired(cluster.running("run=k"), NET),
             timeout=60, what="3 pods wired by the new leader")
    wired = time.monotonic()
    print(f"\nSIGKILL: the standby took the Lease {taken[0] - killed:.2f}s after the kill (lease {LEASE}s + retry "
          f"{RETRY}s), {taken[0] - renewed[0]:.2f}s after the last renewal seen here; the pod created after the "
          f"kill was wired {wired - killed:.1f}s after the kill")
    assert taken[0] - killed <= LEASE + RETRY + SLACK
    assert taken[1].lease_transitions == renewed[1].lease_transitions + 1
    execs = stats(cluster)
    assert execs["by_user"].keys() == {leader.user, standby.user}
    assert execs["most_users_at_once"] == 1
    assert standby.metric("kvc_leader") == 1.0 and standby.metric("kvc_leader_transitions_total") >= 2
    log = standby.log()
    assert f"leader is {leader.name}" in log and "became leader" in log


def test_sigterm_releases_the_lease_and_the_standby_takes_over_within_2s_never_exec_ing_alongside(
        cluster, replicas):
    defaults = ("--lease-duration", "15", "--renew-deadline", "10", "--retry-period", "2")
    leader, standby = two_replicas(replicas, *defaults)
    cluster.create_deployment("g", NET, replicas=3)
    wait_for(lambda: len(cluster.running("run=g")) == 3 and cluster.wired(cluster.running("run=g"), NET),
             timeout=60, what="3 pods wired by the leader")
    cluster.sandbox.faults.set_exec_latency(0.5)  # execs in flight when TERM comes
    before = stats(cluster)["total"]
    cluster.scale("g", 5)
    wait_for(lambda: stats(cluster)["total"] > before, what="the leader exec'ing in the new pods")
    termed = time.monotonic()
    leader.proc.send_signal(signal.SIGTERM)
    released = wait_for(lambda: replicas.lease.first("", after=termed), timeout=20, what="the Lease released")
    taken = wait_for(lambda: replicas.lease.first(standby.name, after=termed), timeout=10,
                     what="the standby holding the Lease")
    assert leader.proc.wait(timeout=20) == 0
    stamps = (taken[1].acquire_time - released[1].renew_time).total_seconds()
    print(f"\nSIGTERM: released {released[0] - termed:.2f}s after the signal (execs in flight finished first); "
          f"the standby held the Lease {taken[0] - released[0]:.3f}s after the release "
          f"({stamps:.3f}s between the records' own times)")
    assert taken[0] - released[0] < 2.0
    assert released[1].lease_duration_seconds == 1
    cluster.sandbox.faults.set_exec_latency(0)
    wait_for(lambda: len(cluster.running("run=g")) == 5 and cluster.wired(cluster.running("run=g"), NET),
             timeout=60, what="5 pods wired by the new leader")
    execs = stats(cluster)
    assert execs["by_user"].keys() == {leader.user, standby.user}
    assert execs["most_users_at_once"] == 1
    assert "lease kube-system/kube-vxlan-controller: released" in leader.log()


def test_a_leader_that_cannot_renew_stops_exec_ing_before_its_lease_could_expire_and_exits_1(cluster, replicas):
    leader, standby = two_replicas(replicas, *SHORT, "--resync", "1")
    cluster.create_deployment("r", NET, replicas=3)
    wait_for(lambda: len(cluster.running("run=r")) == 3 and cluster.wired(cluster.running("run=r"), NET),
             timeout=60, what="3 pods wired by the leader")
    # Execs of 1.5 s every second (the resync): without the fence, some would still run when the
    # standby may take over.
    cluster.sandbox.faults.set_exec_latency(1.5)
    wait_for(lambda: stats(cluster)["by_user"].get(leader.user, 0) > 0, what="execs")
    failing = time.monotonic()
    cluster.sandbox.faults.fail_requests(1.0)  # every API request fails but exec: no renewal gets through
    counts: list[tuple[float, int]] = []

    def lost() -> bool:
        counts.append((time.monotonic(), stats(cluster)["by_user"][leader.user]))
        return "lost leadership" in leader.log()

    wait_for(lost, timeout=RENEW + RETRY + 5, what="the leader saying it lost leadership", interval=0.1)
    cluster.sandbox.faults.fail_requests(0)
    assert leader.proc.wait(timeout=EXEC + 10) == 1
    gave_up = counts[-1][0] - failing
    # the first sample that saw the final count: the last exec began before it
    last_exec = next(t for t, n in counts if n == counts[-1][1]) - failing
    print(f"\ncannot renew: the leader started its last exec at most {last_exec:.2f}s after renewals began to "
          f"fail (its fence: lease {LEASE}s - exec {EXEC}s - 1s), said it lost leadership after {gave_up:.2f}s "
          f"(renew deadline {RENEW}s + retry {RETRY}s), exited 1")
    assert last_exec <= LEASE - EXEC - 1 + SLACK
    assert "could outlast this leader's Lease" in leader.log()
    wait_for(lambda: replicas.lease.first(standby.name, after=failing), timeout=LEASE + 10,
             what="the standby holding the Lease")
    cluster.sandbox.faults.set_exec_latency(0)
    cluster.scale("r", 4)
    wait_for(lambda: len(cluster.running("run=r")) == 4 and cluster.wired(cluster.running("run=r"), NET),
             timeout=60, what="4 pods wired by the new leader")
    execs = stats(cluster)
    assert execs["most_users_at_once"] == 1, "the old leader's execs ran on when the new leader's began"
