"""`run` raises the soft limit of open files to the hard one: a session per pod is a socket per pod."""

from __future__ import annotations

import resource
import subprocess
import sys


def test_the_soft_limit_of_open_files_is_raised_to_the_hard_one():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    code = "from kube_vxlan_controller.run import raise_open_files; import resource; " \
           "print(raise_open_files(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])"

    def low():  # a container runtime's soft limit, as containerd 2 gives
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    done = subprocess.run([sys.executable, "-c", code], preexec_fn=low, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    wanted = min(hard, 1 << 20) if hard != resource.RLIM_INFINITY else 1 << 20
    assert done.stdout.split() == [str(wanted), str(wanted)]
