"""The session protocol: requests and replies (pure), and the session script run for real by `sh` in a
scratch network namespace (root)."""

from __future__ import annotations

import subprocess

import pytest

from kube_vxlan_controller import agent
from kube_vxlan_controller.agentsession import (CARRIED_MAX, PACKED, ReplyError, carried, packed, parse_reply, reply_end,
                                                request, session_argv)

LINK = "link add vxs0 type vxlan id 7 dev eth0 dstport 4789\nlink set vxs0 up\n"
PEER = "fdb append 00:00:00:00:00:00 dev vxs0 dst 10.9.0.{}\n"


def test_a_request_is_its_header_and_bodies_each_ended_by_a_percent_line():
    assert request(3, "state") == "kvc 3 state\n"
    assert request(4, "fdb", PEER.format(2)) == "kvc 4 fdb\nappend vxs0 10.9.0.2\n%\n"
    assert request(5, "links", LINK, "") == f"kvc 5 links\n{LINK}%\n%\n"


def test_an_fdb_body_is_packed_in_order_by_change_and_interface():
    body = "".join(PEER.format(k) for k in range(1, 71)) + PEER.format(71).replace("vxs0", "vxs1") + \
        "fdb del 00:00:00:00:00:00 dev vxs0 dst fd00::1\nfdb del 00:00:00:00:00:00 dev vxs0 dst 10.9.0.9\n"
    lines = packed(body)
    assert [line.split()[:2] + [len(line.split()) - 2] for line in lines] == [
        ["append", "vxs0", PACKED], ["append", "vxs0", PACKED], ["append", "vxs0", 70 - 2 * PACKED],
        ["append", "vxs1", 1], ["del", "vxs0", 2]]
    assert lines[0].split()[2:5] == ["10.9.0.1", "10.9.0.2", "10.9.0.3"]
    assert lines[-1] == "del vxs0 fd00::1 10.9.0.9"
    assert request(6, "fdb", body) == "kvc 6 fdb\n" + "".join(line + "\n" for line in lines) + "%\n"


@pytest.mark.parametrize("kind, bodies", [("fdb", ("fdb append x; reboot\n",)), ("fdb", ("%\n",)),
                                          ("links", ("link add x\n", "fdb del `id`\n")), ("fdb", ()),
                                          ("state", ("x\n",)), ("exec", ("ls\n",)),
                                          ("fdb", ("fdb show dev vxs0\n",)), ("fdb", ("link del vxs0\n",)),
                                          ("links", (LINK, "fdb show\n")),
                                          ("fdb", ("fdb append 00:00:00:00:00:00 dev vxs0 dst 10.9.0.1x\n",)),
                                          ("fdb", ("fdb append 00:00:00:00:00:00 dev .. dst 10.9.0.1\n",)),
                                          ("fdb", ("fdb append 00:00:00:00:00:00 dev vx/0 dst 10.9.0.1\n",)),
                                          ("fdb", ("fdb append 00:00:00:00:00:00 dev vxs0 dst *\n",)),
                                          ("fdb", ("fdb append 00:00:00:00:00:01 dev vxs0 dst 10.9.0.1\n",))])
def test_a_request_carries_batch_lines_only(kind, bodies):
    with pytest.raises(ValueError):
        request(1, kind, *bodies)


def test_a_reply_is_read_only_whole_and_only_for_its_request():
    reply = "out\n\n--kvc-err-- 7\nerr\n\n--kvc-end-- 7 2\n"
    result = parse_reply(7, reply)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "out\n", "err\n")
    assert reply_end(7).search(reply) and not reply_end(8).search(reply)
    for bad in (reply.replace("7", "8"), reply[:-1], reply + "more", "\n--kvc-end-- 7 0\n"):
        with pytest.raises(ReplyError):
            parse_reply(7, bad)


@pytest.mark.root
def test_the_session_script_runs_requests_in_order_and_never_a_body_cut_short(netns):
    """Needs `netns` for its name only: the script runs in it through `ip netns exec`, as in a pod."""
    name = netns(["ip", "netns", "identify"]).stdout.strip()
    shell = subprocess.Popen(["ip", "netns", "exec", name, *session_argv(5)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)

    def ask(ident, kind, *bodies):
        shell.stdin.write(request(ident, kind, *bodies))
        shell.stdin.flush()
        out = ""
        while not reply_end(ident).search(out):
            line = shell.stdout.readline()
            assert line, f"the session ended: {shell.stderr.read()}"
            out += line
        return parse_reply(ident, out)

    try:
        assert ask(1, "links", LINK, PEER.format(2)).exit_code == 0
        assert ask(2, "fdb", PEER.format(3)).exit_code == 0
        failed = ask(9, "fdb", PEER.format(5).replace("vxs0", "vxs9") + PEER.format(6))
        assert failed.exit_code != 0 and "Command failed -:1" in failed.stderr, "the failed line, by its number"
        assert ask(10, "fdb", PEER.format(6)).exit_code == 0 and ask(11, "fdb", "").exit_code == 0
        again = ask(3, "links", "link add vxs0 type vxlan id 7 dev eth0 dstport 4789\n", PEER.format(4))
        assert again.exit_code != 0 and "File exists" in again.stderr, "ip's failure, though bridge succeeded"
        state = agent.parse_state(ask(4, "state").stdout)
        assert state.fdb["vxs0"] == {"10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.6"} and state.links["vxs0"].vni == 7
        many = [f"10.9.{k // 200 + 1}.{k % 200 + 1}" for k in range(199)]
        assert ask(12, "fdb", "".join(PEER.replace("10.9.0.{}", ip) for ip in many)).exit_code == 0
        assert agent.parse_state(ask(13, "state").stdout).fdb["vxs0"] == state.fdb["vxs0"] | set(many)
        gone = ask(14, "fdb", "".join(PEER.replace("append", "del").replace("10.9.0.{}", ip) for ip in many[1:]))
        assert gone.exit_code == 0, gone.stderr
        assert agent.parse_state(ask(15, "state").stdout).fdb["vxs0"] == state.fdb["vxs0"] | {many[0]}
        shell.stdin.write("kvc 5 links\nlink del vxs0\n")  # the client leaves mid-request
        shell.stdin.close()
        assert shell.wait(timeout=10) == 0
    finally:
        shell.kill()
        shell.wait()
    assert "vxs0" in netns(["ip", "link", "show"]).stdout, "the body cut short was not run"


def test_an_opening_carries_a_packed_fdb_body_of_at_most_carried_max():
    body = "".join(PEER.format(k) for k in range(1, 200))
    assert carried("fdb", body) == "".join(line + "\n" for line in packed(body))
    assert len(carried("fdb", body)) <= CARRIED_MAX and carried("fdb", body * 3) is None, "too long for a URL"
    assert carried("state") is None and carried("links", LINK, body) is None
    assert session_argv(5, (7, carried("fdb", body)))[3:] == ["kvc", "7", carried("fdb", body)]
    with pytest.raises(ValueError):
        carried("fdb", "fdb append x; reboot\n")


@pytest.mark.root
def test_the_session_script_runs_the_request_its_opening_carries_first_then_reads_its_stdin(netns):
    name = netns(["ip", "netns", "identify"]).stdout.strip()
    netns(["ip", "-batch", "-"], stdin=LINK)
    many = [f"10.9.{k // 200 + 1}.{k % 200 + 1}" for k in range(199)]
    body = "".join(PEER.replace("10.9.0.{}", ip) for ip in many)
    bad = PEER.format(2).replace("vxs0", "vxs9")
    for first, want in ((body, 0), (bad, 1)):
        shell = subprocess.run(["ip", "netns", "exec", name, *session_argv(5, (1, carried("fdb", first)))],
                               input=request(2, "state"), capture_output=True, text=True, timeout=30)
        at = reply_end(1).search(shell.stdout).end()
        reply = parse_reply(1, shell.stdout[:at])
        assert reply.exit_code == want and shell.returncode == 0
        assert agent.parse_state(parse_reply(2, shell.stdout[at:]).stdout).fdb["vxs0"] == set(many)
    assert "Command failed -:1" in reply.stderr and "vxs9" in reply.stderr
