"""Just enough rtnetlink to follow a network namespace's links and all-zeros fdb entries from outside it.

A netlink socket belongs to the network namespace it was created in, whatever its process does later.
So one process can hold a socket in each pod's namespace (`open_in`: enter the namespace, create the
socket, come back) and read them all from the host's namespace. Subscribed to the link and neighbour
groups, a socket gets every fdb entry the kernel adds or deletes (what `bridge monitor fdb` shows), so
following a thousand idle pods costs nothing; `request_dump` asks for the whole tables (after opening,
or after the kernel dropped notifications because the socket's buffer overflowed: ENOBUFS).

Parsed: links (`RTM_NEWLINK`/`RTM_DELLINK`: index and name) and AF_BRIDGE neighbours whose MAC is
00:00:00:00:00:00 and that have a destination (`RTM_NEWNEIGH`/`RTM_DELNEIGH`: index and IP); every
other message is skipped. Nothing here blocks except `open_in` (a few syscalls).
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from typing import Iterator

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTMGRP_LINK, RTMGRP_NEIGH = 0x1, 0x4
IFLA_IFNAME = 3
NDA_DST, NDA_LLADDR = 1, 2
AF_BRIDGE = 7
CLONE_NEWNET = 0x40000000
SO_RCVBUFFORCE = 33
#: receive buffer per socket: a batch of a few hundred fdb appends arrives at once (root may force it).
RCVBUF = 8 * 1024 * 1024
#: sequence numbers of the two dumps (the links first: entries are named by their link).
LINK_DUMP, FDB_DUMP = 1, 2

_HEADER = struct.Struct("=IHHII")
_ATTR = struct.Struct("=HH")
_IFINFO = struct.Struct("=BxHiII")
_NDMSG = struct.Struct("=BxxxiHBB")
_ZERO_MAC = bytes(6)
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True, slots=True)
class Link:
    index: int
    name: str | None
    deleted: bool


@dataclass(frozen=True, slots=True)
class Entry:
    """An all-zeros fdb entry: flood to `ip` from the link `index`."""

    index: int
    ip: str
    deleted: bool


@dataclass(frozen=True, slots=True)
class Done:
    seq: int
    error: int = 0


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def open_in(netns_path: str) -> socket.socket:
    """A non-blocking rtnetlink socket in the namespace at `netns_path`, subscribed to links and
    neighbours. OSError (FileNotFoundError: the namespace is gone) if it cannot be made. Only the
    calling thread changes namespace, and it is back in its own before this returns."""
    target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.bind((0, RTMGRP_LINK | RTMGRP_NEIGH))
    sock.setblocking(False)
    return sock


def dump_request(seq: int) -> bytes:
    """The request for the whole link table (`LINK_DUMP`) or AF_BRIDGE neighbour table (`FDB_DUMP`)."""
    if seq == LINK_DUMP:
        kind, body = RTM_GETLINK, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    elif seq == FDB_DUMP:
        kind, body = RTM_GETNEIGH, _NDMSG.pack(AF_BRIDGE, 0, 0, 0, 0)
    else:
        raise ValueError(f"unknown dump {seq}")
    return _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    attrs = {}
    while offset + _ATTR.size <= end:
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            break
        attrs[kind & 0x3FFF] = data[offset + _ATTR.size:offset + length]
        offset += (length + 3) & ~3
    return attrs


def parse(data: bytes) -> Iterator[Link | Entry | Done]:
    """The messages of one `recv` that matter here, in order."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _flags, seq, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            return
        body, end = offset + _HEADER.size, offset + length
        if kind in (RTM_NEWNEIGH, RTM_DELNEIGH):
            family, index, _state, _flags, _type = _NDMSG.unpack_from(data, body)
            if family == AF_BRIDGE:
                attrs = _attrs(data, body + _NDMSG.size, end)
                dst = attrs.get(NDA_DST)
                if attrs.get(NDA_LLADDR) == _ZERO_MAC and dst is not None and len(dst) in (4, 16):
                    yield Entry(index, str(ipaddress.ip_address(dst)), kind == RTM_DELNEIGH)
        elif kind in (RTM_NEWLINK, RTM_DELLINK):
            _family, _type, index, _flags, _change = _IFINFO.unpack_from(data, body)
            name = _attrs(data, body + _IFINFO.size, end).get(IFLA_IFNAME)
            yield Link(index, name.rstrip(b"\0").decode() if name else None, kind == RTM_DELLINK)
        elif kind == NLMSG_DONE:
            yield Done(seq)
        elif kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", data, body)
            if error:
                yield Done(seq, -error)
        offset += (length + 3) & ~3
