"""Certificates and keys for a loopback control plane, made with the openssl CLI."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path  # private: signs service-account tokens
    sa_pub: Path  # public: verifies them


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _signed(
    pki_dir: Path, name: str, subject: str, ca: tuple[Path, Path], ext: str
) -> tuple[Path, Path]:
    key, csr, crt = pki_dir / f"{name}.key", pki_dir / f"{name}.csr", pki_dir / f"{name}.crt"
    extfile = pki_dir / f"{name}.ext"
    extfile.write_text(ext)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(extfile), "-out", str(crt),
    )  # fmt: skip
    return crt, key


def make_pki(pki_dir: Path) -> Pki:
    """A throwaway CA, an apiserver serving cert for 127.0.0.1, a system:masters
    client cert, and an RSA key pair for service-account tokens."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = pki_dir / "ca.key", pki_dir / "ca.crt"
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(ca_key))
    _openssl(
        "req", "-x509", "-new", "-key", str(ca_key), "-subj", "/CN=whisperft-e2e-ca",
        "-days", "2", "-sha256", "-out", str(ca_cert),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    ca = (ca_cert, ca_key)
    server_cert, server_key = _signed(
        pki_dir, "apiserver", "/CN=kube-apiserver", ca,
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc,IP:10.0.0.1\n"
        "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
    )  # fmt: skip
    admin_cert, admin_key = _signed(
        pki_dir, "admin", "/O=system:masters/CN=e2e-admin", ca,
        "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
    )  # fmt: skip
    sa_key, sa_pub = pki_dir / "sa.key", pki_dir / "sa.pub"
    _openssl(
        "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(sa_key)
    )
    _openssl("pkey", "-in", str(sa_key), "-pubout", "-out", str(sa_pub))
    return Pki(ca_cert, ca_key, server_cert, server_key, admin_cert, admin_key, sa_key, sa_pub)
