"""The sandbox's certificates: a CA made at start, and a serving certificate it signs for the HTTPS listener.

Clients trust the CA (the kubeconfig's `certificate-authority-data`, a pod's `ca.crt`), never the
serving certificate itself, like a kubeadm cluster. The serving certificate names every address the
listener is bound to as an IP SAN (127.0.0.1 and the extra addresses pods reach it on): the official
client and kubectl verify the host they connect to against it. It also carries the DNS names of the
`kubernetes` Service, for clients that address it so. Nothing is kept on disk: the key pair lives in
this process, and the SSL context is loaded through a private temporary directory removed at once.

EC P-256 keys: generating one takes about a millisecond (RSA 2048: tens of milliseconds per sandbox start).

Concurrency contract: pure values; `generate` is CPU-bound for a few milliseconds and may run on any
thread; a `Certificates` is immutable and safe to share.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: the names a real cluster's serving certificate carries for its `kubernetes` Service.
SERVICE_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local")
VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True, slots=True)
class Certificates:
    #: the CA certificate, PEM: what clients trust.
    ca_pem: bytes
    #: the serving certificate, PEM, and its private key (PKCS#8 PEM, unencrypted).
    cert_pem: bytes
    key_pem: bytes

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for the HTTPS listener: this certificate chain, TLS 1.2 or later."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        with tempfile.TemporaryDirectory(prefix="kvc-sandbox-tls-") as private:  # mode 0700
            chain, key = Path(private) / "chain.pem", Path(private) / "key.pem"
            chain.write_bytes(self.cert_pem + self.ca_pem)
            key.touch(mode=0o600)
            key.write_bytes(self.key_pem)
            context.load_cert_chain(chain, key)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def generate(addresses: Sequence[str]) -> Certificates:
    """A new CA and a serving certificate valid for the IP `addresses` (and `SERVICE_NAMES`)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(minutes=5)  # tolerate a little clock skew
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("kube-vxlan-sandbox-ca")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(now + VALIDITY)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys(addresses)]
    sans += [x509.DNSName(n) for n in SERVICE_NAMES]
    cert = (x509.CertificateBuilder()
            .subject_name(_name("kube-apiserver")).issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False,
                                         crl_sign=False, content_commitment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return Certificates(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
