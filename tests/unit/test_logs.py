"""Log formats: plain text by default; `--log-format json` writes one JSON object a line with the pod and the
network a line is about; urllib3's per-retry warnings only at DEBUG; fdb changes a line per interface and
up to 32 peers."""

from __future__ import annotations

import json
import logging

import pytest
from loguru import logger

from kube_vxlan_controller import logs
from kube_vxlan_controller.agentsession import PACKED, runs


@pytest.fixture
def json_logs(capsys):
    logs.setup("DEBUG", "json")
    yield lambda: [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    logs.setup("INFO")


@pytest.mark.parametrize("message, pod, network", [
    ("pod default/a-1: init agent terminated", "default/a-1", None),
    ("pod default/a-1 network vxeth1: fdb += 10.0.0.2 on vxeth1", "default/a-1", "vxeth1"),
    ("network vxeth1: pod default/a-1 joined with 10.0.0.2 (3 members)", "default/a-1", "vxeth1"),
    ("network vxeth1: no pod names it any more: retired", None, "vxeth1"),
    ("became leader (lease kube-system/kube-vxlan-controller)", None, None),
    ("Watching pods (selector: vxlan.openvnf.org) from version: 7", None, None),
])
def test_the_pod_and_network_of_a_line_come_from_its_first_words(message, pod, network):
    assert logs.subject(message) == (pod, network)


def test_json_is_one_object_a_line_with_level_pod_network_and_message(json_logs):
    logger.info("pod {} network {}: interface {} set up", "default/gw-1", "vxeth2", "vxeth2")
    logger.bind(pod="ns/p", network="n").warning("said\nover two lines")
    logger.info("controller started")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("pod {}: failed", "default/b")
    first, bound, plain, failed = json_logs()
    assert {k: first[k] for k in ("level", "pod", "network", "message")} == {
        "level": "INFO", "pod": "default/gw-1", "network": "vxeth2",
        "message": "pod default/gw-1 network vxeth2: interface vxeth2 set up"}
    assert first["time"].endswith(("+00:00", "Z")) or "T" in first["time"]
    assert (bound["pod"], bound["network"], bound["message"]) == ("ns/p", "n", "said\nover two lines")
    assert (plain["pod"], plain["network"]) == (None, None)
    assert failed["pod"] == "default/b" and "RuntimeError: boom" in failed["exception"]


def test_stdlib_logging_reaches_the_json_lines(json_logs):
    logging.getLogger("pykka").error("actor crashed")
    (line,) = json_logs()
    assert (line["level"], line["message"]) == ("ERROR", "pykka: actor crashed")


def test_urllib3_retry_warnings_only_at_debug():
    logs.setup("INFO")
    assert not logging.getLogger("urllib3.connectionpool").isEnabledFor(logging.WARNING)
    logs.setup("DEBUG")
    assert logging.getLogger("urllib3.connectionpool").isEnabledFor(logging.WARNING)
    logs.setup("INFO")


def test_fdb_changes_are_logged_a_line_per_interface_and_up_to_32_peers_in_order():
    entries = tuple(("vx0", f"10.0.0.{k}") for k in range(1, 71)) + (("vx1", "fd00::1"), ("vx1", "10.0.1.1"))
    lines = runs(entries)
    assert [(dev, len(ips)) for dev, ips in lines] == [("vx0", PACKED), ("vx0", PACKED), ("vx0", 70 - 2 * PACKED),
                                                       ("vx1", 2)]
    assert [ip for _, ips in lines for ip in ips] == [ip for _, ip in entries] and runs(()) == []
