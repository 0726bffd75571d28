"""Exec websockets, opened here on one TLS context per cluster and read with the client's `WSClient`.

    sockets = ExecSockets(cluster.core(), threads=36)
    ws = sockets.open(namespace, pod, container, argv, stdin=True)   # a WSClient, the command started

Why not `kubernetes.stream.stream()`: its `create_websocket` hands websocket-client TLS options without
a context, so every connection builds an `ssl.SSLContext` of its own and loads the CA into it, about
20 kB held as long as the connection (20 MB at 1 000 sessions, docs/sessions.md). Here one context,
built when `ExecSockets` is, carries every exec websocket; the rest is what `create_websocket` does:

- TLS exactly as the configuration (the kubeconfig, or the pod's service account) says: with
  `verify_ssl`, the server's certificate is verified against `ssl_ca_cert` (else certifi's bundle, as
  the client does) and its name checked unless `assert_hostname` is false; without it (the kubeconfig's
  `insecure-skip-tls-verify`) nothing is verified. The client certificate (`cert_file`, `key_file`) and
  `tls_server_name` (SNI and the name checked) as given. The files are read once, when the context is
  built: a CA or client certificate replaced on disk applies from the next start.
- Headers: the `authorization` of the request `CoreV1.exec_request` builds for each websocket (so a
  token the configuration refreshes, in a pod from the service account's token file, goes on every new
  one) and `sec-websocket-protocol: v5.channel.k8s.io,v4.channel.k8s.io` (v5 first: only v5 can close
  stdin). The protocol the server chose is `WSClient.subprotocol`.
- A proxy as the configuration says (`proxy`, `no_proxy`, `proxy_headers`), through the client's own
  `websocket_proxycare`.
- Each blocking socket operation (connecting, the upgrade, one frame) is bounded by `SOCKET_TIMEOUT`:
  a server that accepts the connection but never answers cannot hold the thread for ever.
- TCP keepalive as client-go dials (`transport/cache.go`: `net.Dialer{KeepAlive: 30 * time.Second}`; Go
  probes every 30 s after 30 s of silence and gives up after 9 unanswered probes), not websocket-client's
  own (probes every 10 s, gives up after 3). A session sits idle for minutes between requests, and a
  probe is one segment that TCP never sends again: three lost in a row, 30 s of packet loss, and
  websocket-client's settings drop a healthy session (the bench lost about a fifth of 1 000 idle sessions
  so, docs/benchmarks.md). A peer that really went away is still noticed, after 5 minutes of silence
  instead of one; sooner, by the next request's deadline.

The connection and its TLS handshake run on a few threads of this object's own (`threads`, started as
needed), not on the caller's: a thread that did a handshake keeps tens of kB more memory for good
(docs/sessions.md), and the callers are the pod actors, one thread per pod.

What `open` returns is the client's `WSClient` (channels, `write_stdin`, `close_channel`, `update`,
`run_forever`, `close`) over that websocket, except that it keeps no copy of everything read
(`read_all` is not available): an exec reads its channels, and a session would grow that copy for ever.

Errors: what websocket-client and the socket raise, unchanged (`errors.classify` sorts them; a refused
upgrade by its HTTP status).

Concurrency contract: `open` may be called from any thread at once (building a request only reads the
`ApiClient`; an `SSLContext` may be shared by threads); it blocks its thread while one of the opening
threads connects and upgrades, each step at most `SOCKET_TIMEOUT`, and for a free opening thread first
when more than `threads` calls open at once (the executor's slots keep them fewer). A websocket it
returns is then used by one thread at a time.
"""

from __future__ import annotations

import os
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor

import certifi
import websocket
from kubernetes.client import Configuration
from kubernetes.stream.ws_client import V4_CHANNEL_PROTOCOL, V5_CHANNEL_PROTOCOL, WSClient, get_websocket_url, \
    websocket_proxycare

from kube_vxlan_controller.k8s.corev1 import CoreV1

#: seconds any one blocking websocket operation may take
SOCKET_TIMEOUT = 10.0
#: TCP keepalive of every exec websocket: seconds of silence before the first probe, seconds between
#: probes, unanswered probes before the connection is dropped (client-go's, see the module docstring)
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES = 30, 30, 9
KEEPALIVE = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1), (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE),
             (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL),
             (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)]
PROTOCOLS = f"{V5_CHANNEL_PROTOCOL},{V4_CHANNEL_PROTOCOL}"


class ExecSockets:
    """Opens exec websockets to one cluster (the `CoreV1`'s), all on `ssl_context` (None over plain HTTP)."""

    def __init__(self, core: CoreV1, *, threads: int) -> None:
        self._core = core
        self._opening = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="exec-open")
        self._configuration: Configuration = core.api_client.configuration
        self.ssl_context = tls_context(self._configuration) if self._configuration.host.startswith("https:") else None
        self._sslopt = {"context": self.ssl_context}
        if self._configuration.tls_server_name:
            self._sslopt["server_hostname"] = self._configuration.tls_server_name

    def open(self, namespace: str, pod: str, container: str, argv: list[str], *, stdin: bool) -> WSClient:
        """Start `argv` in `namespace/pod`'s `container` (stdout and stderr always, stdin if asked, no tty);
        return its websocket once the server accepted the upgrade."""
        return self._opening.submit(self._open, namespace, pod, container, argv, stdin).result()

    def _open(self, namespace: str, pod: str, container: str, argv: list[str], stdin: bool) -> WSClient:
        url, headers = self._core.exec_request(pod, namespace, command=list(argv), container=container, stdin=stdin,
                                               stdout=True, stderr=True, tty=False)
        url = get_websocket_url(url)
        header = [f"sec-websocket-protocol: {PROTOCOLS}"]
        if headers.get("authorization"):
            header.append(f"authorization: {headers['authorization']}")
        options = {"header": header}
        if self._configuration.proxy or self._configuration.proxy_headers:
            options = websocket_proxycare(options, self._configuration, url, headers)
        sock = websocket.WebSocket(sslopt=self._sslopt, sockopt=KEEPALIVE, skip_utf8_validation=False)
        sock.settimeout(SOCKET_TIMEOUT)
        sock.connect(url, **options)  # closes its socket when it fails
        return _Channels(sock)


def tls_context(configuration: Configuration) -> ssl.SSLContext:
    """The TLS context the client's `create_websocket` makes for each connection, made once (see the
    module docstring)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    keylog = os.environ.get("SSLKEYLOGFILE")  # as websocket-client honours it for the contexts it makes
    if keylog is not None:
        context.keylog_filename = keylog
    if configuration.verify_ssl:
        context.load_verify_locations(cafile=configuration.ssl_ca_cert or certifi.where())
        context.check_hostname = True if configuration.assert_hostname is None else bool(configuration.assert_hostname)
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


class _Channels(WSClient):
    """`WSClient` over a websocket opened here: `WSClient.__init__` opens its own, so this sets the same
    attributes it sets (kubernetes 37's), without the copy of everything read."""

    def __init__(self, sock: websocket.WebSocket) -> None:
        self._channels = {}
        self._closed_channels = set()
        self.binary = False
        self.newline = "\n"
        self._all = _Discard()
        self.sock = sock
        self.subprotocol = next((value for key, value in (sock.getheaders() or {}).items()
                                 if key.lower() == "sec-websocket-protocol"), None)
        self._connected = True
        self._returncode = None


class _Discard:
    """Stands in for the client's copy of everything read (`WSClient._all`, kept for `read_all()`)."""

    def write(self, _data) -> None:
        pass

    def getvalue(self) -> str:
        raise TypeError("an exec websocket keeps no copy of what it read: read its channels")
