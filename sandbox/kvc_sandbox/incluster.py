"""What a pod needs to talk to the sandbox's API from inside, as a kubelet gives it to a real pod.

A container gets the directory `MOUNT_PATH` holding `token` (its ServiceAccount's bearer token), `ca.crt`
(the sandbox's CA, PEM) and `namespace`, and the environment `KUBERNETES_SERVICE_HOST` /
`KUBERNETES_SERVICE_PORT`: exactly what the official client's `load_incluster_config()` reads (it
connects to https://HOST:PORT and verifies the serving certificate, which carries HOST as an IP SAN).
HOST is the address pods reach the HTTPS listener on: the first extra listen address (e.g. the pods'
network gateway), else 127.0.0.1.

    files = sandbox.in_cluster.files("kube-system", "kube-vxlan-controller")  # on the loop
    env = sandbox.in_cluster.env()

Concurrency contract: `host`, `port`, `ca_pem`, `url` and `env()` are immutable, safe from any thread.
`token_for`, `files` and `write` read the token table and must run on the sandbox's event loop (the
kubelet's place); from another thread use `Sandbox.token_for` / `Sandbox.serviceaccount_files`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .authn import Tokens

MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True)
class InCluster:
    host: str
    port: int
    #: the CA certificate clients trust (PEM).
    ca_pem: bytes
    tokens: Tokens

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {"KUBERNETES_SERVICE_HOST": self.host, "KUBERNETES_SERVICE_PORT": str(self.port)}

    def token_for(self, namespace: str, serviceaccount: str) -> str:
        """The ServiceAccount's token; KeyError when it does not exist."""
        return self.tokens.token_for(namespace, serviceaccount)

    def files(self, namespace: str, serviceaccount: str) -> dict[str, bytes]:
        """The contents of `MOUNT_PATH` for a pod of this ServiceAccount: file name → bytes."""
        return {"token": self.token_for(namespace, serviceaccount).encode(), "ca.crt": self.ca_pem,
                "namespace": namespace.encode()}

    def write(self, directory: Path, namespace: str, serviceaccount: str) -> Path:
        """Write `files()` into `directory` (created), to bind-mount at `MOUNT_PATH`; returns it."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, content in self.files(namespace, serviceaccount).items():
            (directory / name).write_bytes(content)
        return directory
