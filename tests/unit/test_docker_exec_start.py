"""The docker runtime's exec, against an engine that answers as dockerd does when the exec never got a process:
the kubelet's InternalError Status, never the engine's exit code 126. (The live race — an exec into a pod being
deleted — is in tests/docker/test_docker_kubelet.py; this pins each answer the engine has been seen giving.)"""

from __future__ import annotations

import asyncio

import pytest

from kvc_sandbox.dockerruntime import DockerExec
from kvc_sandbox.execws import ExecError


class Engine:
    """dockerd's exec API for one exec: its multiplexed output, then its inspect (`Pid`, `ExitCode`)."""

    def __init__(self, output: bytes, *, pid: int, exit_code: int) -> None:
        self.output, self.pid, self.exit_code = output, pid, exit_code

    async def call(self, method: str, path: str, params=None, body=None):
        if method == "POST" and path.endswith("/exec"):
            return {"Id": "e1"}
        assert (method, path) == ("GET", "/exec/e1/json")
        return {"Pid": self.pid, "ExitCode": self.exit_code}

    async def hijack(self, path: str, body: dict):
        reader = asyncio.StreamReader()
        reader.feed_data(bytes([1, 0, 0, 0]) + len(self.output).to_bytes(4, "big") + self.output)
        reader.feed_eof()
        return reader, Writer()


class Writer:
    def close(self) -> None:
        pass


class Session:
    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []

    async def send(self, channel: int, data: bytes) -> None:
        self.sent.append((channel, data))


@pytest.mark.parametrize("answer", [
    b"OCI runtime exec failed: exec failed: unable to start container process: exec: \"nope\": unknown\r\n",
    b"ttrpc: closed: unknown\r\n",
    b"cannot exec in a stopped state: unknown\r\n",
    b"cannot exec in a deleted state: unknown\r\n",
])
def test_an_exec_that_never_got_a_process_is_the_kubelets_internal_error(answer):
    session = Session()
    with pytest.raises(ExecError) as raised:
        asyncio.run(DockerExec(Engine(answer, pid=0, exit_code=126), "c").run(
            session, ["sleep", "300"], stdin=False, stdout=True, stderr=True))
    assert str(raised.value) == ('error executing command in container: failed to exec in container: failed to start '
                                 f'exec "e1": {answer.decode().strip()}')
    assert session.sent == []


def test_the_same_words_from_a_process_that_ran_are_its_output():
    session = Session()
    code = asyncio.run(DockerExec(Engine(b"cannot exec in a deleted state: unknown\n", pid=42, exit_code=3), "c").run(
        session, ["echo"], stdin=False, stdout=True, stderr=True))
    assert (code, session.sent) == (3, [(1, b"cannot exec in a deleted state: unknown\n")])
