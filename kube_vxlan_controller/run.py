"""`kube-vxlan-controller run`: the controller in the foreground until SIGTERM/SIGINT.

SIGTERM (`kill -TERM 1` in the pod) stops it gracefully: the watcher stops, in-flight execs finish or
hit their deadline, actors stop in reverse start order, the Lease is released, exit 0. A fatal
condition (restart budget exhausted) and lost leadership (the Lease could not be renewed) exit 1 so
that Kubernetes restarts the container (which then comes back as a standby).

Open files: with sessions each member pod holds one socket of the controller's, so at start the soft limit
of open files is raised to the hard one (as Go programs do): containerd 2 starts containers with a soft
limit of 1024, which a thousand pods' sessions would exceed.
"""

from __future__ import annotations

import resource
import signal
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
    logs.setup(settings.log_level, settings.log_format)
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
