"""Helpers for the tests of the sandbox API on any runtime (imported as `apihelpers`: the test directories
are not packages): manifests, and exec through the official client with everything it returns (output,
channel 3, time)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.config import incluster_config
from kubernetes.stream import stream
from polling import wait_for

from kube_vxlan_controller import __version__


AGENT_INIT = "vxlan-controller-agent-init"
AGENT = "vxlan-controller-agent"
#: The exit codes of an exec of `kill -TERM 1`: the container's main process (the agent) exits at once on
#: TERM, and the kernel then SIGKILLs whatever is left in its PID namespace — the exec'd `kill` too when it
#: has not exited yet. So the exec ends 0 or 137, whichever wins, as on a real cluster.
TERMINATE_CODES = (0, 137)


#: the agent image as the seed's manifests name it (the docker runtime runs the local build of it; the
#: netns runtime runs the agent script whatever the image)
AGENT_IMAGE = f"openvnf/kube-vxlan-controller-agent:{__version__}"


def agent_container(name: str) -> dict:
    return {"name": name, "image": AGENT_IMAGE, "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}


def pod_manifest(name: str, labels: dict | None = None, init: list[str | dict] | None = None,
                 containers: list[str | dict] | None = None) -> dict:
    """A pod whose containers are agents (a name) or given in full (a dict)."""
    init = [AGENT_INIT] if init is None else init
    containers = [AGENT] if containers is None else containers
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": "test"}},
            "spec": {"initContainers": [c if isinstance(c, dict) else agent_container(c) for c in init],
                     "containers": [c if isinstance(c, dict) else agent_container(c) for c in containers]}}


def deployment_manifest(name: str, replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name, "vxlan.openvnf.org": "true"}},
                                  "spec": {"initContainers": [agent_container(AGENT_INIT)],
                                           "containers": [agent_container(AGENT)]}}}}


def host_pid1() -> tuple:
    """What identifies the host's PID 1 (a test checks that nothing run in a pod touched it)."""
    return (os.stat("/proc/1").st_ctime, Path("/proc/1/cmdline").read_bytes(),
            Path("/proc/1/stat").read_text().split()[21])


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


# -- exec through the official client ------------------------------------------------------------------
@dataclass
class Outcome:
    stdout: str
    stderr: str
    status: dict | None  # channel 3, parsed; None while the command runs
    elapsed: float


def open_exec(api: k8s.CoreV1Api, pod: str, argv: list[str], *, container: str = "c", stdin: bool = False,
              protocol: str | None = None, namespace: str = "default"):
    extra = {"_headers": {"sec-websocket-protocol": protocol}} if protocol else {}
    return stream(api.connect_get_namespaced_pod_exec, pod, namespace, command=argv, container=container,
                  stdin=stdin, stdout=True, stderr=True, tty=False, _preload_content=False, **extra)


def close(resp) -> None:
    """`resp.close()` alone leaks the socket when the server closed first (websocket-client marks the
    connection closed when it answers the server's close frame, and `close()` then returns early)."""
    resp.close()
    resp.sock.shutdown()


def finish(resp, timeout: float, start: float) -> Outcome:
    resp.run_forever(timeout=timeout)
    raw = resp.read_channel(3, timeout=0) if not resp.is_open() else ""
    out = Outcome(resp.read_stdout(timeout=0), resp.read_stderr(timeout=0),
                  json.loads(raw) if raw else None, time.monotonic() - start)
    return out


def run(api, pod, argv, *, timeout: float = 10.0, stdin_data: str | None = None, close_stdin: bool = True,
        **kw) -> Outcome:
    start = time.monotonic()
    resp = open_exec(api, pod, argv, stdin=stdin_data is not None, **kw)
    try:
        if stdin_data is not None:
            resp.write_stdin(stdin_data)
            if close_stdin:
                resp.close_channel(0)
        return finish(resp, timeout, start)
    finally:
        close(resp)


def wait_agent_looping(api, pod: str, container: str = "c") -> None:
    """Wait until the agent in the container is in its loop: it starts by removing a /run/terminate left
    from an earlier run, so a touch before that is lost (the controller touches long after, to release it).
    In its loop it sleeps between looks."""
    wait_for(lambda: "sleep" in run(api, pod, ["ps", "-e", "-o", "comm="], container=container).stdout.split(),
             what=f"the agent of {pod}:{container} in its loop")


def exit_code(status: dict | None) -> int | None:
    if status is None:
        return None
    if status["status"] == "Success":
        return 0
    return int(status["details"]["causes"][0]["message"])


def incluster_api(sandbox, directory, monkeypatch, namespace: str, serviceaccount: str):
    """An ApiClient made by the official client's `load_incluster_config()`, from the files and environment a
    pod of this ServiceAccount gets (written to `directory`)."""
    sandbox.in_cluster.write(directory, namespace, serviceaccount)
    for key, value in sandbox.in_cluster.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(directory / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(directory / "ca.crt"))
    configuration = k8s.Configuration()
    incluster_config.load_incluster_config(client_configuration=configuration)
    return k8s.ApiClient(configuration)


def token_kubeconfig(sandbox, path, token: str):
    """A kubeconfig for the sandbox's HTTPS listener that authenticates with `token`; returns its path."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "sandbox", "cluster": {
            "server": sandbox.url, "certificate-authority-data": base64.b64encode(sandbox.in_cluster.ca_pem).decode()}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "sandbox", "user": "sa", "namespace": "default"}}]}))
    return path


def service_account_token(sandbox, namespace: str, name: str) -> str:
    """The ServiceAccount's token, once the sandbox has minted it (the `default` ones come soon after start)."""
    def token() -> str | None:
        try:
            return sandbox.token_for(namespace, name)
        except KeyError:
            return None

    return wait_for(token, what=f"a token for {namespace}/{name}")


def status_codes_as_nobody(urls: list[str], ca_pem: bytes | None = None) -> list[int]:
    """The HTTP status of a GET of each URL, sent by another local user (nobody), trusting `ca_pem` for
    https; skips the test when that cannot be arranged here."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to connect as another user")
    cadata = ca_pem.decode() if ca_pem else None
    probe = ("import urllib.request, urllib.error, ssl\n"
             f"context = ssl.create_default_context(cadata={cadata!r})\n"
             "codes = []\n"
             f"for url in {urls!r}:\n"
             "    try:\n"
             "        codes.append(urllib.request.urlopen(url, timeout=5, context=context).status)\n"
             "    except urllib.error.HTTPError as e:\n"
             "        codes.append(e.code)\n"
             "print(codes)\n")
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    as_nobody = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python,
                                "-c", probe], capture_output=True, text=True, timeout=30)
    if "Permission denied" in as_nobody.stderr:
        pytest.skip(f"user nobody cannot run {python} here")
    assert as_nobody.returncode == 0, as_nobody.stderr
    return [int(code) for code in as_nobody.stdout.strip().strip("[]").split(",")]
