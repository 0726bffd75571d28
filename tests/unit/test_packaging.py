"""The package metadata and the lock files, checked offline: every dependency named in a pyproject.toml
is pinned with hashes, and the tests run the versions the image ships (`make lock` renews both)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SANDBOX = tomllib.loads((ROOT / "sandbox" / "pyproject.toml").read_text())["project"]
OWN = {"kube-vxlan-controller", "kube-vxlan-sandbox"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return canonical(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group())


def pins(name: str) -> dict[str, tuple[str, list[str]]]:
    """A lock file's pins: name → (version, its sha256 hashes)."""
    text = (ROOT / name).read_text()
    found = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", entry)
        if m:
            found[canonical(m.group(1))] = (m.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
    return found


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_every_pin_carries_hashes(lock):
    locked = pins(lock)
    assert locked
    assert all(hashes for _, hashes in locked.values()), [n for n, (_, h) in locked.items() if not h]
    assert not OWN & set(locked)


def test_the_image_lock_pins_every_runtime_dependency():
    locked = pins("requirements.lock")
    missing = {requirement_name(r) for r in PROJECT["dependencies"]} - set(locked)
    assert not missing, f"not in requirements.lock: {sorted(missing)}: run `make lock`"


def test_the_dev_lock_pins_the_tests_and_sandboxs_dependencies_at_the_images_versions():
    dev = pins("requirements-dev.lock")
    named = {requirement_name(r) for r in PROJECT["dependencies"] + PROJECT["optional-dependencies"]["test"]
             + SANDBOX["dependencies"]} - OWN
    assert not named - set(dev), f"not in requirements-dev.lock: {sorted(named - set(dev))}: run `make lock`"
    image = pins("requirements.lock")
    assert {n: dev[n] for n in image} == image


def test_license_is_the_originals_apache_2():
    assert PROJECT["license"] == "Apache-2.0" == SANDBOX["license"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert PROJECT["license-files"] == ["LICENSE"]
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]  # PEP 639: the expression only
