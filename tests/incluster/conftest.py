"""The in-cluster tests' cluster: the sandbox with the Docker runtime, or an opt-in k3s (clusters.py).

Module-scoped: one cluster per test module (starting one and applying the bundle takes seconds); each
module leaves the cluster as it found the bundle, and everything is removed at the end, also on failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import tomllib
from pathlib import Path

import pytest
from clusters import ROOT, Cluster, load_images_into_k3s
from runtimes import missing_images, unavailable

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
CONTROLLER_IMAGE = f"openvnf/kube-vxlan-controller:{VERSION}"
IMAGES = [CONTROLLER_IMAGE, f"openvnf/kube-vxlan-controller-agent:{VERSION}", "busybox:latest"]


@pytest.fixture(scope="module", params=["sandbox", "k3s"])
def cluster(request):
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not found")
    why = unavailable("docker")
    if why is not None:
        pytest.skip(why)
    missing = missing_images(IMAGES)
    if missing:
        pytest.skip(f"image(s) {', '.join(missing)} not built: run `make images` (make test does, as root)")
    workdir = Path(tempfile.mkdtemp(prefix="kvc-incluster-"))
    try:
        if request.param == "sandbox":
            yield from _sandbox(workdir)
        else:
            yield from _k3s(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _sandbox(workdir: Path):
    from kvc_sandbox import Sandbox

    with Sandbox(workdir=workdir, runtime="docker", tls=True, restart_delay=2.0) as sb:
        yield Cluster("sandbox", sb.kubeconfig, workdir)


def _k3s(workdir: Path):
    image = os.environ.get("KVC_K3S_IMAGE")
    if not image:
        pytest.skip("k3s: set KVC_K3S_IMAGE (e.g. rancher/k3s:v1.31.4-k3s1) with an engine that can pull it; "
                    "not run on our machines, which cannot pull registry images")
    from testcontainers.community.k3s import K3SContainer

    try:
        k3s = K3SContainer(image).start()
    except Exception as exc:  # an image that cannot be pulled, an engine without privileged containers
        pytest.skip(f"k3s {image} could not start: {exc}")
    try:
        load_images_into_k3s(k3s.get_container_id(), IMAGES)
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(k3s.config_yaml())
        yield Cluster("k3s", kubeconfig, workdir)
    finally:
        k3s.stop()
