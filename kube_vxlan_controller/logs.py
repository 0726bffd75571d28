"""Logging: loguru everywhere, with the standard library's `logging` (pykka, urllib3, kubernetes) routed
into it — otherwise an actor crash that pykka logs would go unseen."""

from __future__ import annotations

import logging
import sys

from loguru import logger

FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} {message}"


class _Intercept(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("pykka") and record.getMessage().startswith("Unhandled exception in"):
            return  # the actor's supervisor logs the crash, once, with its traceback (actors/supervisor.py)
        try:
            level = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, "{}: {}", record.name, record.getMessage())


def setup(level: str = "INFO") -> None:
    logger.remove()
    logger.add(sys.stderr, level=level.upper(), format=FORMAT, backtrace=False, diagnose=False)
    logging.basicConfig(handlers=[_Intercept()], level=logging.WARNING, force=True)
    logging.getLogger("pykka").setLevel(logging.WARNING)
