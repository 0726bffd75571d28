"""Execs and sessions over the sandbox's HTTPS (its own CA, bearer tokens), as on a real cluster: the
websockets open on one shared TLS context (on the executor's own threads), verified as the kubeconfig says, with the token the
configuration gives at that moment (root)."""

from __future__ import annotations

import base64
import ssl
import threading

import pytest
import runtimes
import yaml

from kube_vxlan_controller.agentsession import parse_reply, reply_end, request, session_argv
from kube_vxlan_controller.k8s.client import connect
from kube_vxlan_controller.k8s.errors import ApiUnavailable, K8sError
from kube_vxlan_controller.k8s.execs import Executor
from kube_vxlan_controller.k8s.pods import INIT_AGENT_CONTAINER as CONTAINER
from kube_vxlan_controller.model import ExecResult
from kvc_sandbox import tls

pytestmark = pytest.mark.root

PEER = "fdb append 00:00:00:00:00:00 dev vxt0 dst 10.9.0.{}\n"


@pytest.fixture
def sandbox(tmp_path):
    """Overrides the plain one: this sandbox serves HTTPS, and its kubeconfig uses it."""
    yield from runtimes.sandbox_on("netns", tmp_path, tls=True)


def kubeconfig_with(sandbox, path, **changes):
    """The sandbox's kubeconfig with `changes` to its cluster (None removes a key), or its user's token."""
    doc = yaml.safe_load(sandbox.kubeconfig.read_text())
    cluster, user = doc["clusters"][0]["cluster"], doc["users"][0]["user"]
    for key, value in changes.items():
        target = user if key == "token" else cluster
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_execs_and_a_session_go_over_https_on_one_shared_tls_context(sandbox, cluster, running_pod):
    running_pod("p1")
    executor = Executor(cluster)
    context = executor.sockets.ssl_context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert executor.run("default", "p1", CONTAINER, ["sh", "-c", "echo out; echo err >&2; exit 3"]) == \
        ExecResult(3, "out\n", "err\n")
    assert executor.run("default", "p1", CONTAINER, ["ip", "link", "add", "vxt0", "type", "vxlan", "id", "5",
                                                     "dev", "eth0", "dstport", "4789"]).exit_code == 0
    session = executor.open_session("default", "p1", CONTAINER, session_argv(5))
    try:
        reply = session.ask(request(1, "fdb", PEER.format(2)), reply_end(1), deadline=5)
        assert parse_reply(1, reply).exit_code == 0
    finally:
        session.close()
    sockets = [executor.sockets.open("default", "p1", CONTAINER, ["true"], stdin=False) for _ in range(2)]
    try:
        tls_sockets = [ws.sock.sock for ws in sockets]
        assert all(isinstance(s, ssl.SSLSocket) and s.context is context for s in tls_sockets)
        # connected on the executor's own threads, not on this one
        assert any(thread.name.startswith("exec-open") for thread in threading.enumerate())
        assert {ws.subprotocol for ws in sockets} == {"v5.channel.k8s.io"}
    finally:
        for ws in sockets:
            ws.close()


def test_a_server_the_ca_did_not_sign_is_refused(sandbox, running_pod, tmp_path):
    running_pod("p1")
    other_ca = tls.generate(["127.0.0.1"]).ca_pem
    cluster = connect(kubeconfig_with(sandbox, tmp_path / "other-ca",
                                      **{"certificate-authority-data": base64.b64encode(other_ca).decode()}))
    try:
        with pytest.raises(ApiUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            Executor(cluster).run("default", "p1", CONTAINER, ["true"])
    finally:
        cluster.close()


def test_insecure_skip_tls_verify_verifies_nothing_only_when_the_kubeconfig_says_so(sandbox, running_pod, tmp_path):
    running_pod("p1")
    cluster = connect(kubeconfig_with(sandbox, tmp_path / "insecure", **{"certificate-authority-data": None,
                                                                        "insecure-skip-tls-verify": True}))
    try:
        executor = Executor(cluster)
        assert executor.sockets.ssl_context.verify_mode == ssl.CERT_NONE
        assert executor.run("default", "p1", CONTAINER, ["true"]).exit_code == 0
    finally:
        cluster.close()


def test_every_websocket_carries_the_token_the_configuration_gives_at_that_moment(sandbox, running_pod, tmp_path):
    running_pod("p1")
    admin = yaml.safe_load(sandbox.kubeconfig.read_text())["users"][0]["user"]["token"]
    cluster = connect(kubeconfig_with(sandbox, tmp_path / "bad-token", token="not-a-token"))
    try:
        executor = Executor(cluster)
        with pytest.raises(K8sError) as refused:
            executor.run("default", "p1", CONTAINER, ["true"])
        assert refused.value.status == 401
        # what the in-cluster loader does with the service account's token file: a hook called per request
        # (a token read again from the file when it may have been rotated)
        cluster.configuration.refresh_api_key_hook = lambda c: c.api_key.update(BearerToken=f"Bearer {admin}")
        assert executor.run("default", "p1", CONTAINER, ["true"]).exit_code == 0
    finally:
        cluster.close()
