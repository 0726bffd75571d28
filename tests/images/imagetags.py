"""What the image tests look for: the tags `make images` gives (from deploy/*.yaml and the project's
version) and the label on every container they start."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
CONTROLLER = f"openvnf/kube-vxlan-controller:{VERSION}"
AGENT = f"openvnf/kube-vxlan-controller-agent:{VERSION}"
LABEL = {"kvc-test": "images"}
