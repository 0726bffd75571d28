"""The controller image as `make images` builds it: it runs, as uid 65532, under tini, stops gracefully,
and holds no sandbox code; the controller's wheel holds none either. It installs requirements.lock's
versions, less what only the client's asyncio twin needs and less pip, and stays within 150 MB."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import zipfile

from imagetags import LABEL, ROOT, VERSION
from polling import wait_for
from testcontainers.core.container import DockerContainer

#: a cluster that refuses connections: the controller keeps retrying (with backoff) until stopped.
UNREACHABLE_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: none, user: {}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


def container(image: str, *command: str) -> DockerContainer:
    c = DockerContainer(image, labels=LABEL)
    return c.with_command(list(command)) if command else c


def run_to_end(image: str, *command: str, entrypoint: list[str] | None = None) -> tuple[int, str]:
    c = container(image, *command)
    if entrypoint is not None:
        c.with_kwargs(entrypoint=entrypoint)
    with c:
        wrapped = c.get_wrapped_container()
        code = wrapped.wait(timeout=60)["StatusCode"]
        return code, wrapped.logs().decode()


def test_version_runs(images):
    code, out = run_to_end(images["controller"], "version")
    assert (code, out.strip()) == (0, VERSION)


def test_runs_as_uid_65532(images):
    code, out = run_to_end(images["controller"], "-u", entrypoint=["id"])
    assert (code, out.strip()) == (0, "65532")


def test_image_holds_no_sandbox_code(images):
    probe = ("import importlib.metadata as md, importlib.util\n"
             "assert importlib.util.find_spec('kvc_sandbox') is None, 'kvc_sandbox importable'\n"
             "dists = sorted(d.metadata['Name'] for d in md.distributions())\n"
             "assert 'kube-vxlan-sandbox' not in dists, dists\n"
             "hits = [str(f) for f in md.files('kube-vxlan-controller') if 'sandbox' in str(f)]\n"
             "assert not hits, hits\n"
             "import kube_vxlan_controller.controller\n"
             "print('clean')")
    code, out = run_to_end(images["controller"], "-c", probe, entrypoint=["python"])
    assert (code, out.strip()) == (0, "clean"), out


def test_tini_is_pid_1_and_docker_stop_ends_it_gracefully(images, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG)
    kubeconfig.chmod(0o644)
    c = container(images["controller"], "run", "--kubeconfig", "/kubeconfig", "--health", "")
    c.with_volume_mapping(str(kubeconfig), "/kubeconfig", "ro")
    with c:
        wrapped = c.get_wrapped_container()
        wait_for(lambda: "from version" in wrapped.logs().decode() or "retrying" in wrapped.logs().decode(),
                 timeout=30, what="the controller's first list attempt")
        code, pid1 = wrapped.exec_run(["cat", "/proc/1/comm"])
        assert (code, pid1.decode().strip()) == (0, "tini")
        started = time.monotonic()
        wrapped.stop(timeout=10)
        stopped_in = time.monotonic() - started
        wrapped.reload()
        state = wrapped.attrs["State"]
        logs = wrapped.logs().decode()
    assert state["ExitCode"] == 0, logs
    assert stopped_in < 10, f"took {stopped_in:.1f}s: killed at the end of the grace period, not stopped"
    assert "received SIGTERM" in logs and "controller stopped" in logs, logs


def test_wheel_holds_no_sandbox_module(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("kube_vxlan_controller-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("kube_vxlan_controller/controller.py") for n in names)
    assert not [n for n in names if "sandbox" in n or n.startswith("kvc_")], names


#: what the Dockerfile's builder removes: the asyncio client's dependencies, and the installers
NOT_SHIPPED = {"aiohttp", "aiohttp-retry", "aiohappyeyeballs", "aiosignal", "attrs", "frozenlist", "multidict",
               "propcache", "yarl", "pip", "setuptools"}


def test_the_image_is_at_most_150_mb(images, docker_client):
    size = docker_client.images.get(images["controller"]).attrs["Size"]
    assert size <= 150e6, f"{size / 1e6:.0f} MB"  # as `docker images` counts (10^6 bytes a MB)


def test_the_image_holds_the_locked_versions_less_the_asyncio_clients_dependencies_and_pip(images):
    locked = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+)", (ROOT / "requirements.lock").read_text(),
                             re.MULTILINE))
    probe = ("import importlib.metadata as md, importlib.util, json, re\n"
             "print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version"
             " for d in md.distributions()}))\n"
             "assert importlib.util.find_spec('kubernetes.aio') is None\n"
             "import kube_vxlan_controller.controller, kube_vxlan_controller.cli")
    code, out = run_to_end(images["controller"], "-c", probe, entrypoint=["python"])
    assert code == 0, out
    shipped = json.loads(out.splitlines()[0])
    assert shipped.pop("kube-vxlan-controller") == VERSION
    assert shipped == {name: version for name, version in locked.items() if name not in NOT_SHIPPED}
