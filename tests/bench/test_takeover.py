"""`python -m bench.takeover` still measures hand-overs end to end (root): one SIGTERM and one SIGKILL of
the leader of two replicas, on a short lease so that it is quick. Asserts the figures are there and within
their bounds, and that it left no process or namespace behind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
LEASE, RETRY = 3, 0.5


def test_one_sigterm_and_one_sigkill_hand_over_within_their_bounds():
    out = subprocess.run(
        [sys.executable, "-m", "bench.takeover", "--runs", "1", "--", "--lease-duration", str(LEASE),
         "--renew-deadline", "2", "--retry-period", str(RETRY), "--exec-deadline", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^SIGTERM: r\d released the Lease \S+s after the signal, r\d led \S+s after the release; "
                     r"r\d exited 0$", out.stdout, re.MULTILINE), out.stdout
    release = float(re.search(r"^SIGTERM: release → standby leads: min \S+s, median \S+s, max (\S+)s$",
                              out.stdout, re.MULTILINE).group(1))
    killed = float(re.search(r"^SIGKILL: kill → standby leads: min \S+s, median \S+s, max (\S+)s$",
                             out.stdout, re.MULTILINE).group(1))
    assert release < 2.0 and killed < LEASE + RETRY + 1.0, out.stdout
    assert "left" not in out.stderr, out.stderr  # bench.cluster.SandboxServer.stop says what it left
    leftover = subprocess.run(["pgrep", "-f", "kube-vxlan-controller run .*--identity r"], capture_output=True)
    assert leftover.returncode == 1, leftover.stdout
