"""Who is on the other end of a loopback connection: the sandbox serves only its own user.

Its API has no authentication (kubectl sends no bearer token over plain HTTP, and a TLS setup would be
out of proportion for a local test cluster), yet pod exec runs commands as root on this machine. So
every connection's peer is looked up in /proc/net/tcp, which names the uid owning each socket, and a
peer of another uid is refused — the same guarantee a Unix socket with mode 0600 would give.

Concurrency contract: called on the API server's event loop; reads one small /proc file per new
connection (the answer is kept per transport, so keep-alive requests cost nothing).
"""

from __future__ import annotations

import os
import socket
import weakref

_known: "weakref.WeakKeyDictionary[object, bool]" = weakref.WeakKeyDictionary()


def uid_of(peer: tuple[str, int], proc_net_tcp: str = "/proc/net/tcp") -> int | None:
    """The uid owning the local socket bound to `peer` (an IPv4 loopback address), or None."""
    want = "%08X:%04X" % (int.from_bytes(socket.inet_aton(peer[0]), "little"), peer[1])
    with open(proc_net_tcp) as table:
        next(table)  # header
        for line in table:
            fields = line.split()
            if fields[1] == want:
                return int(fields[7])
    return None


def same_user(transport) -> bool:
    if transport is None:
        return False
    known = _known.get(transport)
    if known is None:
        peer = transport.get_extra_info("peername")
        known = _known[transport] = bool(peer) and uid_of(peer[:2]) == os.geteuid()
    return known
