"""Certificate issuance throughput: meshctl.core.pki against an openssl command-line loop.

(a) N node certificates with ecdsa-p256 keys made on the controller (key generation +
    signing + PEM encoding), signed by the mesh CA (RSA 4096 by default, as awx-operator
    makes it).
(b) N CSR signings: CSRs prepared beforehand as PEM; timed: load + check_csr +
    sign_node_cert + PEM encoding.
Side by side, the same work done with the openssl CLI (genpkey + req + x509 -req with an
extfile carrying the same extensions for (a); x509 -req for (b)) for fewer iterations,
extrapolated per item.

Targets on a 2-core machine: each phase <= 3 s for 1,000 items; >= 15x faster per item
than the openssl loop. The serial figures are judged; the 2-thread figures show what a
caller gains by running sign_node_cert in threads (cryptography releases the GIL while
signing). Prints figures; exits 0 (it is not a test).
Run: python benchmarks/bench_certs.py [--n 1000] [--openssl-n 50] [--ca-key-type rsa4096]
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import get_args

from cryptography.hazmat.primitives import serialization

from meshctl.core import pki as C

TARGET_S = 3.0
TARGET_RATIO = 15.0
DAYS = 365
KEY_TYPE: C.KeyType = "ecdsa-p256"
OPENSSL_TIMEOUT = 60  # seconds per openssl process: one signature never takes that long


def node(i: int) -> tuple[str, list[str]]:
    name = f"exec{i:05d}.example.com"
    return name, [name, f"10.2.{i // 250}.{i % 250 + 1}"]


def san_text(node_id: str, addresses: list[str]) -> str:
    names = C.node_general_names(node_id, addresses)
    parts = [f"DNS:{n.value}" if n.__class__.__name__ == "DNSName" else f"IP:{n.value}" for n in names[:-1]]
    return ",".join([*parts, f"otherName:{C.NODEID_OID};UTF8:{node_id}"])


def extfile(path: Path, node_id: str, addresses: list[str]) -> Path:
    # The extensions sign_node_cert writes, in openssl's config syntax.
    path.write_text(
        "[ v3 ]\n"
        f"subjectAltName = {san_text(node_id, addresses)}\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth, clientAuth\n"
        "authorityKeyIdentifier = keyid\n"
        "subjectKeyIdentifier = hash\n"
    )
    return path


def run(*args: str) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=OPENSSL_TIMEOUT)


def x509_req(openssl: str, work: Path, csr: Path, ext: Path, out: Path) -> None:
    run(openssl, "x509", "-req", "-in", str(csr), "-CA", str(work / "ca.pem"), "-CAkey", str(work / "ca.key"),
        "-set_serial", "0x" + secrets.token_hex(16), "-days", str(DAYS), "-sha256",
        "-extfile", str(ext), "-extensions", "v3", "-out", str(out))


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def report(label: str, n: int, ours: float, threaded: float, theirs_per_item: float, m: int, what: str) -> None:
    per_item = ours / n
    ratio = theirs_per_item / per_item
    print(label)
    print(f"  meshctl:      {ours:6.3f} s for {n}, {per_item * 1e3:7.3f} ms/item   "
          f"(target <= {TARGET_S:.0f} s for 1000: {ours * 1000 / n:.2f} s)  "
          f"{'OK' if ours * 1000 / n <= TARGET_S else 'OVER'}")
    print(f"  meshctl x2 threads: {threaded:6.3f} s for {n}, {threaded / n * 1e3:7.3f} ms/item")
    print(f"  openssl CLI:  {theirs_per_item * 1e3:7.3f} ms/item over {m} iterations ({what}); "
          f"{theirs_per_item * n:6.1f} s for {n} extrapolated")
    print(f"  ratio:        {ratio:5.1f}x faster   (target >= {TARGET_RATIO:.0f}x)  "
          f"{'OK' if ratio >= TARGET_RATIO else 'OVER'}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000, help="items per meshctl phase")
    ap.add_argument("--openssl-n", type=int, default=50, help="iterations of each openssl loop")
    ap.add_argument("--ca-key-type", default="rsa4096", choices=get_args(C.KeyType))
    args = ap.parse_args()
    openssl = shutil.which("openssl")
    if openssl is None:
        print("openssl CLI not found (Debian package openssl)", file=sys.stderr)
        return 1
    version = subprocess.run([openssl, "version"], capture_output=True, text=True, timeout=OPENSSL_TIMEOUT).stdout
    from cryptography.hazmat.backends.openssl.backend import backend

    n, m = args.n, args.openssl_n
    t0 = time.perf_counter()
    ca_key, ca_cert = C.create_ca(C.ca_common_name("bench"), args.ca_key_type)
    print(f"CA: {args.ca_key_type} made in {time.perf_counter() - t0:.2f} s (not counted)")
    print(f"cryptography uses {backend.openssl_version_text()}; the CLI is {version.strip()}")
    nodes = [node(i) for i in range(n)]

    # (a) controller-made keys.
    def issue(i: int) -> tuple[bytes, bytes]:
        node_id, addresses = nodes[i]
        key, cert = C.issue_node_cert(ca_key, ca_cert, node_id, addresses, KEY_TYPE, DAYS)
        return C.key_to_pem(key), cert.public_bytes(serialization.Encoding.PEM)

    a_ours = timed(lambda: [issue(i) for i in range(n)])
    with ThreadPoolExecutor(2) as pool:
        a_threads = timed(lambda: list(pool.map(issue, range(n))))

    # (b) CSRs made beforehand (as nodes would send them).
    csr_pems = []
    for node_id, addresses in nodes:
        csr_pems.append(C.csr_for(C.generate_key(KEY_TYPE), node_id, addresses).public_bytes(serialization.Encoding.PEM))

    def sign(i: int) -> bytes:
        node_id, addresses = nodes[i]
        csr = C.load_csr(csr_pems[i])
        problems = C.check_csr(csr, node_id, KEY_TYPE, addresses)
        if problems:
            raise SystemExit(f"bench CSR refused: {problems}")
        cert = C.sign_node_cert(ca_key, ca_cert, csr.public_key(), node_id, addresses, DAYS)
        return cert.public_bytes(serialization.Encoding.PEM)

    b_ours = timed(lambda: [sign(i) for i in range(n)])
    with ThreadPoolExecutor(2) as pool:
        b_threads = timed(lambda: list(pool.map(sign, range(n))))

    with tempfile.TemporaryDirectory(prefix="bench-certs-") as tmp:  # the CA key lives here only
        work = Path(tmp)
        (work / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        (work / "ca.key").write_bytes(C.key_to_pem(ca_key))
        (work / "req.cnf").write_text("[ req ]\ndistinguished_name = dn\nprompt = no\n[ dn ]\nCN = unused\n")

        def openssl_issue(i: int) -> Path:
            node_id, addresses = nodes[i]
            d = work / f"a{i}"
            d.mkdir()
            run(openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(d / "k.pem"))
            run(openssl, "req", "-new", "-config", str(work / "req.cnf"), "-key", str(d / "k.pem"),
                "-subj", f"/CN={node_id}", "-out", str(d / "r.csr"))
            x509_req(openssl, work, d / "r.csr", extfile(d / "ext.cnf", node_id, addresses), d / "c.pem")
            return d / "c.pem"

        a_theirs = timed(lambda: [openssl_issue(i) for i in range(m)]) / m

        for i in range(m):
            d = work / f"b{i}"
            d.mkdir()
            (d / "r.csr").write_bytes(csr_pems[i])
            extfile(d / "ext.cnf", *nodes[i])

        def openssl_sign(i: int) -> Path:
            d = work / f"b{i}"
            x509_req(openssl, work, d / "r.csr", d / "ext.cnf", d / "c.pem")
            return d / "c.pem"

        b_theirs = timed(lambda: [openssl_sign(i) for i in range(m)]) / m

        # The openssl loop did the same work: its certificates verify and pass our checks.
        for cert_file, (node_id, addresses) in ((work / "a0" / "c.pem", nodes[0]), (work / "b0" / "c.pem", nodes[0])):
            run(openssl, "verify", "-CAfile", str(work / "ca.pem"), str(cert_file))
            status = C.inspect_cert(cert_file.read_bytes(), ca_cert.public_bytes(serialization.Encoding.PEM))
            assert status.chain_ok and not status.ok(node_id, addresses, 30), status

    print()
    report(f"(a) {n} node certificates, {KEY_TYPE} keys made on the controller", n, a_ours, a_threads,
           a_theirs, m, "genpkey + req + x509 -req")
    print()
    report(f"(b) {n} CSR signings (check_csr + sign_node_cert)", n, b_ours, b_threads, b_theirs, m, "x509 -req")
    return 0


if __name__ == "__main__":
    sys.exit(main())
