"""`kube-vxlan-controller run`: the controller in the foreground until SIGTERM/SIGINT.

SIGTERM (`kill -TERM 1` in the pod) stops it gracefully: the watcher stops, in-flight execs finish or
hit their deadline, actors stop in reverse start order, the Lease is released, exit 0. A fatal
condition (restart budget exhausted) and lost leadership (the Lease could not be renewed) exit 1 so
that Kubernetes restarts the container (which then comes back as a standby).
"""

from __future__ import annotations

import argparse
import signal
import threading

from loguru import logger

from . import logs, settings as settings_module
from .controller import Controller


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kube-vxlan-controller run",
                                description="Run the controller (in-cluster config unless --kubeconfig).")
    settings_module.add_arguments(p)
    return p


def main(argv: list[str]) -> int:
    settings = settings_module.from_arguments(parser().parse_args(argv))
    logs.setup(settings.log_level)
    stop = threading.Event()

    def on_signal(signum, _frame):
        logger.info("received {}: shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    controller = Controller(settings)
    try:
        controller.start()
        while not (stop.is_set() or controller.fatal.is_set() or controller.lost.is_set()):
            stop.wait(0.5)
    finally:
        controller.stop()
    return 1 if controller.fatal.is_set() or controller.lost.is_set() else 0
