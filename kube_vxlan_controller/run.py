"""`kube-vxlan-controller run`: the controller in the foreground until SIGTERM/SIGINT.

SIGTERM (`kill -TERM 1` in the pod) stops it gracefully: the watcher stops, in-flight execs finish or
hit their deadline, actors stop in reverse start order, the Lease is released, exit 0. A fatal
condition (restart budget exhausted) and lost leadership (the Lease could not be renewed) exit 1 so
that Kubernetes restarts the container (which then comes back as a standby).

Open files: with sessions each member pod holds one socket of the controller's, so at start the soft limit
of open files is raised to the hard one (as Go programs do): containerd 2 starts containers with a soft
limit of 1024, which a thousand pods' sessions would exceed.

Memory: with sessions the controller is some thousand threads, nearly all idle. glibc's malloc gives
each thread a cache of freed chunks (tcache) and spreads threads over up to 8 arenas per CPU of the node,
each holding freed memory of its own; at 1 000 pods over HTTPS that was 26–34 MB of RSS
(docs/sessions.md). So `run` starts again at once (`execve`: the same PID, arguments and environment)
with `GLIBC_TUNABLES` set to `MALLOC_TUNABLES`, no tcache and 2 arenas, unless `GLIBC_TUNABLES` is set
already (an operator's own choice, even empty, is kept). Other C libraries ignore the variable.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import threading

from loguru import logger

from . import logs, settings as settings_module
from .admin import ListenError
from .failures import Failure, Parser
from .controller import Controller
from .k8s import client
from .k8s.errors import K8sError


def parser() -> Parser:
    p = Parser(prog="kube-vxlan-controller run",
               description="Run the controller. Its configuration: --kubeconfig PATH; else, in a pod, its "
                           "service account; else $KUBECONFIG or ~/.kube/config, as kubectl.")
    settings_module.add_arguments(p)
    return p


def main(argv: list[str]) -> int:
    settings = settings_module.from_arguments(parser().parse_args(argv))
    tune_malloc()
    logs.setup(settings.log_level, settings.log_format)
    logger.debug("malloc: GLIBC_TUNABLES={!r}", os.environ.get("GLIBC_TUNABLES"))
    said = {"trace": settings.log_level.upper() in ("TRACE", "DEBUG"), "logged": settings.log_format == "json"}
    try:
        cluster = client.connect(settings.kubeconfig, namespace=settings.namespace)
    except K8sError as error:
        raise Failure(str(error), **said) from error
    stop = threading.Event()

    def on_signal(signum, _frame):
        logger.info("received {}: shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    raise_open_files()
    controller = Controller(settings, cluster=cluster)
    try:
        controller.start()
        while not (stop.is_set() or controller.fatal.is_set() or controller.lost.is_set()):
            stop.wait(0.5)
    except ListenError as error:
        raise Failure(f"{error}; give it another address (--admin, --health or their KVC_* variables; '' turns "
                      "one off), or stop what listens there", **said) from error
    finally:
        controller.stop()
    return 1 if controller.fatal.is_set() or controller.lost.is_set() else 0


#: glibc's malloc for many idle threads: no per-thread cache of freed chunks, 2 arenas (see the docstring)
MALLOC_TUNABLES = "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=2"


def tune_malloc() -> None:
    """Start again with `GLIBC_TUNABLES=MALLOC_TUNABLES` unless `GLIBC_TUNABLES` is set (returns only then)."""
    if "GLIBC_TUNABLES" in os.environ or not sys.executable:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, {**os.environ, "GLIBC_TUNABLES": MALLOC_TUNABLES})


#: the most open files asked for when the hard limit is unlimited
OPEN_FILES = 1 << 20


def raise_open_files() -> int:
    """Raise the soft limit of open files to the hard one (at most OPEN_FILES); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as error:
            logger.warning("open files: could not raise the soft limit from {} to {}: {}", soft, wanted, error)
            return soft
        logger.debug("open files: soft limit raised from {} to {}", soft, wanted)
        return wanted
    return soft
