"""The clusters the in-cluster tests run on, behind one small interface: a kubeconfig and kubectl.

- `sandbox`: the project's sandbox with the Docker runtime (real images, HTTPS, service-account tokens,
  RBAC enforced, httpGet probes) — runs wherever a Docker engine does.
- `k3s`: a real k3s started by testcontainers' k3s module, opt-in: set `KVC_K3S_IMAGE` (for example
  `rancher/k3s:v1.31.4-k3s1`) and have an engine that can pull it; the images `make images` built are
  loaded into it. Not run on our machines (no registry can be pulled from): there it skips, saying so.

Everything the tests do goes through kubectl, so the same tests hold both to the same standard.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from seedexample import Cluster

__all__ = ["Cluster", "ROOT", "load_images_into_k3s"]

ROOT = Path(__file__).resolve().parents[2]


def load_images_into_k3s(container_id: str, images: list[str]) -> None:
    """`docker save` the images and import them into k3s's containerd (k8s.io namespace)."""
    with tempfile.NamedTemporaryFile(suffix=".tar") as archive:
        subprocess.run(["docker", "save", "-o", archive.name, *images], check=True, capture_output=True)
        with open(archive.name, "rb") as data:
            subprocess.run(["docker", "exec", "-i", container_id, "ctr", "-n", "k8s.io", "images", "import", "-"],
                           stdin=data, check=True, capture_output=True)
