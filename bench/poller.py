"""The kernel's view of every pod's fdb, from one process of its own: `python -m bench.poller`.

Convergence is read from the kernel, never from a contender. Rather than running `bridge fdb show` in
every namespace again and again (a process per pod per round, quadratic in entries), this process holds
one netlink socket in each pod's network namespace (netlink.py) and is told by the kernel of every
all-zeros entry added or deleted, as it happens. It dumps a namespace's tables when it starts following
it, when the kernel dropped notifications (ENOBUFS), and on `verify` (every namespace dumped again and
compared with what the notifications built: a mismatch means the notifications missed something).

Protocol, JSON lines. In, on stdin: `{"watch": UID, "netns": NAME}` (NAME under /run/netns),
`{"forget": UID}` (close its socket at once: a socket keeps its namespace alive), `{"verify": true}`.
Out, on stdout: `{"uid": UID, "t": T, "add": [[DEV, IP]…], "del": [[DEV, IP]…], "ready": BOOL}` (T: the
monotonic clock, shared by every process of the machine, when the kernel's message was read; ready: the
first dump is complete, the pod's fdb is known from now on), `{"uid": UID, "gone": true}` (the namespace
could not be opened), `{"verified": N, "mismatched": M}`. It exits on EOF of stdin.

`FdbPoller` is the bench's handle on that process: it starts it, sends the commands, and hands what comes
back to a `Wiring` (wiring.py) on a reader thread.

Concurrency contract (the process): one thread, one epoll loop over stdin and the sockets; every read is
non-blocking; output is flushed once per loop turn.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from bench import netlink
from bench.processes import Child

NETNS_DIR = "/run/netns"
_RECV = 1 << 18


class _Namespace:
    """One followed pod: its socket, its links and entries, and the dump in progress."""

    def __init__(self, uid: str, sock) -> None:
        self.uid, self.sock = uid, sock
        self.links: dict[int, str] = {}
        self.entries: set[tuple[int, str]] = set()
        self.dumping = 0  # 0, or the sequence number of the dump in progress
        self.pending_links: dict[int, str] = {}
        self.pending_entries: set[tuple[int, str]] = set()
        self.again = False  # dump again once this one is done (notifications were dropped meanwhile)
        self.ready = False
        self.verifying = False

    def dump(self) -> None:
        if self.dumping:
            self.again = True
            return
        self.dumping, self.pending_links = netlink.LINK_DUMP, {}
        self.sock.send(netlink.dump_request(netlink.LINK_DUMP))

    def name(self, index: int) -> str:
        return self.links.get(index, f"if{index}")


class Poller:
    def __init__(self, out=sys.stdout) -> None:
        self.out = out
        self.selector = selectors.DefaultSelector()
        self.namespaces: dict[str, _Namespace] = {}
        self.verify_left: set[str] = set()
        self.mismatched = 0

    def run(self) -> None:
        stdin = sys.stdin.buffer.fileno()
        os.set_blocking(stdin, False)
        self.selector.register(stdin, selectors.EVENT_READ, None)
        buffered = b""
        while True:
            for key, _ in self.selector.select():
                if key.data is None:
                    chunk = os.read(stdin, 1 << 16)
                    if not chunk:
                        return
                    buffered += chunk
                    *lines, buffered = buffered.split(b"\n")
                    for line in lines:
                        if line.strip():
                            self.command(json.loads(line))
                elif key.data.uid in self.namespaces:
                    self.read(key.data)
            self.out.flush()

    def command(self, message: dict) -> None:
        if "watch" in message:
            self.watch(message["watch"], message["netns"])
        elif "forget" in message:
            self.forget(message["forget"])
        elif message.get("verify"):
            self.verify_left = set(self.namespaces)
            self.mismatched = 0
            for ns in self.namespaces.values():
                ns.verifying = True
                ns.dump()
            self._verified()

    def watch(self, uid: str, netns: str) -> None:
        if uid in self.namespaces:
            return
        try:
            sock = netlink.open_in(os.path.join(NETNS_DIR, netns))
        except OSError:
            self.emit({"uid": uid, "gone": True})
            return
        ns = self.namespaces[uid] = _Namespace(uid, sock)
        self.selector.register(sock, selectors.EVENT_READ, ns)
        ns.dump()

    def forget(self, uid: str) -> None:
        ns = self.namespaces.pop(uid, None)
        if ns is not None:
            self.selector.unregister(ns.sock)
            ns.sock.close()
        if uid in self.verify_left:
            self.verify_left.discard(uid)
            self._verified()

    def read(self, ns: _Namespace) -> None:
        added: list[tuple[int, str]] = []
        deleted: list[tuple[int, str]] = []
        became_ready = False
        t = time.monotonic()
        while True:
            try:
                data = ns.sock.recv(_RECV)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                ns.dump()  # notifications were dropped: read the whole table again
                continue
            t = time.monotonic()
            for message in netlink.parse(data):
                if isinstance(message, netlink.Entry):
                    key = (message.index, message.ip)
                    if message.deleted:
                        if ns.dumping == netlink.FDB_DUMP:
                            ns.pending_entries.discard(key)
                        if key in ns.entries:
                            ns.entries.discard(key)
                            deleted.append(key)
                    else:
                        if ns.dumping == netlink.FDB_DUMP:
                            ns.pending_entries.add(key)
                        if key not in ns.entries:
                            ns.entries.add(key)
                            added.append(key)
                elif isinstance(message, netlink.Link):
                    if message.deleted:
                        ns.links.pop(message.index, None)
                        ns.pending_links.pop(message.index, None)
                        gone = {key for key in ns.entries if key[0] == message.index}
                        ns.entries -= gone
                        ns.pending_entries -= gone
                        deleted += gone
                    elif message.name:
                        ns.links[message.index] = message.name
                        if ns.dumping == netlink.LINK_DUMP:
                            ns.pending_links[message.index] = message.name
                elif isinstance(message, netlink.Done) and message.seq == ns.dumping:
                    became_ready |= self._dump_step(ns, message, added, deleted)
        if added or deleted or became_ready:
            self.emit({"uid": ns.uid, "t": t, "ready": ns.ready,
                       "add": [[ns.name(i), ip] for i, ip in added],
                       "del": [[ns.name(i), ip] for i, ip in deleted]})

    def _dump_step(self, ns: _Namespace, done: netlink.Done, added: list, deleted: list) -> bool:
        """The end of one of the two dumps; True when the pod's fdb just became known."""
        if done.error:
            print(f"poller: dump {done.seq} of {ns.uid} failed: {os.strerror(done.error)}", file=sys.stderr)
            ns.dumping = 0
            ns.dump()
            return False
        if done.seq == netlink.LINK_DUMP:
            ns.links = dict(ns.pending_links)
            ns.dumping, ns.pending_entries = netlink.FDB_DUMP, set()
            ns.sock.send(netlink.dump_request(netlink.FDB_DUMP))
            return False
        missed, extra = ns.pending_entries - ns.entries, ns.entries - ns.pending_entries
        added += missed
        deleted += extra
        ns.entries, ns.dumping = set(ns.pending_entries), 0
        if ns.verifying:
            ns.verifying = False
            self.mismatched += bool((missed or extra) and ns.ready)
            self.verify_left.discard(ns.uid)
            self._verified()
        became_ready = not ns.ready
        ns.ready = True
        if ns.again:
            ns.again = False
            ns.dump()
        return became_ready

    def _verified(self) -> None:
        if not self.verify_left:
            self.emit({"verified": len(self.namespaces), "mismatched": self.mismatched})
            self.verify_left = set()

    def emit(self, message: dict) -> None:
        self.out.write(json.dumps(message, separators=(",", ":")) + "\n")


class FdbPoller:
    """The bench's handle on the poller process; what it reports goes to `wiring` (see the module docstring)."""

    def __init__(self, wiring, *, log: Path) -> None:
        self.wiring = wiring
        #: called with the UID of a pod whose namespace could not be opened (set by the pod tracker)
        self.on_gone = lambda uid: None
        self.child = Child("poller", [sys.executable, "-m", "bench.poller"], log=log,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, grace=5.0)
        self._lock = threading.Lock()
        self._verified = threading.Event()
        self._verification: dict = {}
        self._reader = threading.Thread(target=self._read, name="poller-reader", daemon=True)

    def start(self) -> "FdbPoller":
        self.child.start()
        self._reader.start()
        return self

    def watch(self, uid: str, netns: str) -> None:
        self._send({"watch": uid, "netns": netns})

    def forget(self, uid: str) -> None:
        self._send({"forget": uid})

    def verify(self, timeout: float = 60.0) -> dict:
        """Every followed namespace dumped again: {"verified": N, "mismatched": M}; {} on timeout."""
        self._verified.clear()
        self._send({"verify": True})
        return dict(self._verification) if self._verified.wait(timeout) else {}

    def stop(self) -> None:
        with self._lock:
            try:
                self.child.proc.stdin.close()  # EOF: the poller closes its sockets and exits
            except (OSError, AttributeError):
                pass
        try:
            self.child.proc.wait(5)
        except (subprocess.TimeoutExpired, AttributeError):
            pass
        self.child.stop()
        if self._reader.is_alive():
            self._reader.join(5)

    def _send(self, message: dict) -> None:
        with self._lock:
            try:
                self.child.proc.stdin.write((json.dumps(message) + "\n").encode())
                self.child.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass  # stopping

    def _read(self) -> None:
        for line in self.child.proc.stdout:
            try:
                message = json.loads(line)
                if "verified" in message:
                    self._verification = message
                    self._verified.set()
                elif message.get("gone"):
                    self.on_gone(message["uid"])
                else:
                    self.wiring.fdb_changed(message["uid"], message["t"], message["add"], message["del"],
                                            message["ready"])
            except Exception:  # noqa: BLE001 - one bad line must not stop the kernel's view for good
                traceback.print_exc()


if __name__ == "__main__":
    try:
        Poller().run()
    except KeyboardInterrupt:
        pass
