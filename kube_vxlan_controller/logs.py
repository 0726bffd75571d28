"""Logging: loguru everywhere, with the standard library's `logging` (pykka, urllib3, kubernetes) routed
into it — otherwise an actor crash that pykka logs would go unseen.

Two formats on stderr: text (the default), or `json`: one JSON object a line with `time`, `level`,
`pod`, `network` and `message` (and `exception`, a traceback, when there is one). `pod` and `network`
are the ones a line is about, null when none: taken from `logger.bind(pod=…, network=…)` when bound,
else from the words every line about them starts with (STYLE: logs name the pod and the network):
`pod NS/NAME: …`, `pod NS/NAME network NET: …`, `network NET: …`, `network NET: pod NS/NAME …`.

urllib3 warns of each connection retry it makes inside one API call; the call's failure is what our
retry loops log (once, with what to check), so those warnings show only with `--log-level DEBUG`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback

from loguru import logger

FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} {message}"

_SUBJECT = re.compile(
    r"pod (?P<pod>[^\s:]+)(?: network (?P<pod_network>[^\s:]+))?:"
    r"|network (?P<network>[^\s:]+):(?: pod (?P<network_pod>[^\s:]+) )?")


class _Intercept(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("pykka") and record.getMessage().startswith("Unhandled exception in"):
            return  # the actor's supervisor logs the crash, once, with its traceback (actors/supervisor.py)
        try:
            level = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, "{}: {}", record.name, record.getMessage())


def subject(message: str) -> tuple[str | None, str | None]:
    """(pod, network) a log line is about, from its first words (see the module docstring)."""
    match = _SUBJECT.match(message)
    if match is None:
        return None, None
    return match["pod"] or match["network_pod"], match["pod_network"] or match["network"]


def json_line(record) -> str:
    """A loguru record as one JSON object, newline-terminated."""
    pod, network = subject(record["message"])
    line = {
        "time": record["time"].isoformat(timespec="milliseconds"),
        "level": record["level"].name,
        "pod": record["extra"].get("pod", pod),
        "network": record["extra"].get("network", network),
        "message": record["message"],
    }
    if record["exception"] is not None:
        kind, value, trace = record["exception"]
        line["exception"] = "".join(traceback.format_exception(kind, value, trace))
    return json.dumps(line, ensure_ascii=False) + "\n"


def setup(level: str = "INFO", log_format: str = "text") -> None:
    level = level.upper()
    logger.remove()
    if log_format == "json":
        logger.add(lambda message: sys.stderr.write(json_line(message.record)), level=level)
    else:
        logger.add(sys.stderr, level=level, format=FORMAT, backtrace=False, diagnose=False)
    logging.basicConfig(handlers=[_Intercept()], level=logging.WARNING, force=True)
    logging.getLogger("pykka").setLevel(logging.WARNING)
    logging.getLogger("urllib3.connectionpool").setLevel(
        logging.WARNING if level in ("TRACE", "DEBUG") else logging.ERROR)
