"""Who is on the other end of a loopback connection (kvc_sandbox.peers): the kernel's answer for the one
socket, the same as /proc/net/tcp says, for this user and for another."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from kvc_sandbox import peers


@pytest.fixture
def server():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener
    listener.close()


def test_the_uid_of_a_connection_is_the_kernels_and_the_tables(server):
    with socket.create_connection(server.getsockname()) as client:
        accepted, _ = server.accept()
        with accepted:
            got = peers.uid_of(client.getsockname(), server.getsockname())
            assert got == os.geteuid()
            assert got == peers._uid_in_table(client.getsockname(), server.getsockname(), "/proc/net/tcp")


def test_no_such_connection_has_no_uid(server):
    assert peers.uid_of(("127.0.0.1", 1), server.getsockname()) is None


@pytest.mark.root
def test_a_connection_of_another_user_is_that_users(server):
    nobody = 65534
    child = subprocess.Popen(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{server.getsockname()[1]}; read -r _"],
                             stdin=subprocess.PIPE, user=nobody)
    try:
        accepted, peer = server.accept()
        with accepted:
            assert peers.uid_of(peer, server.getsockname()) == nobody
    finally:
        child.stdin.close()
        child.wait(timeout=10)
