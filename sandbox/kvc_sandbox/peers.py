"""Who is on the other end of a loopback connection: the sandbox serves only its own user.

Its API has no authentication (kubectl sends no bearer token over plain HTTP, and a TLS setup would be
out of proportion for a local test cluster), yet pod exec runs commands as root on this machine. So
every connection's client end is looked up in /proc/net/tcp, which names the uid owning each socket,
and a peer of another uid is refused (the user who ran `sudo` is this user too) — the guarantee a Unix
socket with mode 0600 would give.

Concurrency contract: called on the API server's event loop; reads one small /proc file per new
connection (the answer is kept per transport, so keep-alive requests cost nothing).
"""

from __future__ import annotations

import os
import socket
import weakref

_known: "weakref.WeakKeyDictionary[object, bool]" = weakref.WeakKeyDictionary()


ESTABLISHED = "01"


def _hex(address: tuple[str, int]) -> str:
    return "%08X:%04X" % (int.from_bytes(socket.inet_aton(address[0]), "little"), address[1])


def uid_of(peer: tuple[str, int], server: tuple[str, int], proc_net_tcp: str = "/proc/net/tcp") -> int | None:
    """The uid owning the client end of the established connection `peer` → `server` (IPv4), or None.

    The whole connection is matched, and only in state ESTABLISHED: a TIME_WAIT row of an earlier
    connection from the same port is listed with uid 0."""
    local, remote = _hex(peer), _hex(server)
    with open(proc_net_tcp) as table:
        next(table)  # header
        for line in table:
            fields = line.split()
            if fields[1] == local and fields[2] == remote and fields[3] == ESTABLISHED:
                return int(fields[7])
    return None


def allowed_uids() -> set[int]:
    """This process's user and, under sudo, the user who ran sudo (so `sudo … sandbox` and kubectl
    as yourself work together)."""
    uids = {os.geteuid()}
    if os.environ.get("SUDO_UID", "").isdigit():
        uids.add(int(os.environ["SUDO_UID"]))
    return uids


def same_user(transport) -> bool:
    if transport is None:
        return False
    known = _known.get(transport)
    if known is None:
        peer, server = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
        try:
            known = bool(peer) and uid_of(peer[:2], server[:2]) in allowed_uids()
        except OSError:  # not an IPv4 peer: the sandbox listens on 127.0.0.1 only
            known = False
        _known[transport] = known
    return known
