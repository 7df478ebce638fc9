"""CSRs: the request a node sends, the checks before signing one, and the script that
makes one on the node with openssl (the key never leaves the node)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

from cryptography import x509

from meshctl.core.pki.keys import (
    EC_CURVES,
    KEY_TYPES,
    RSA_BITS,
    KeyType,
    NodeKey,
    hash_for,
    key_type_of,
)
from meshctl.core.pki.names import (
    NODEID,
    NODEID_OID,
    check_node_id,
    cn_name,
    decode_der_string,
    describe_name,
    node_general_names,
    subject_cn,
)

# What node_csr_script lets through to openssl's -subj / -addext syntax, where "/", ",",
# "=", "+", ";" and backslashes are separators (same set as meshctl's node-id rule).
_SCRIPT_NODE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")  # fullmatch: no trailing newline


def csr_for(key: NodeKey, node_id: str, addresses: Iterable[str]) -> x509.CertificateSigningRequest:
    """The CSR a node would send: ``CN=<node id>`` and its subjectAltName names."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(cn_name(node_id))
        .add_extension(x509.SubjectAlternativeName(node_general_names(node_id, addresses)), critical=False)
        .sign(key, hash_for(key))
    )


def check_csr(
    csr: x509.CertificateSigningRequest, node_id: str, key_type: KeyType, allowed_addresses: Iterable[str]
) -> list[str]:
    """Why ``csr`` must not be signed for ``node_id``; empty when it is fine.

    Checks the self-signature, the key type and size, the subject CN and that the
    requested subjectAltName names (if any) are among ``allowed_addresses`` plus the
    NodeID otherName of this node. Other requested extensions are ignored: the
    certificate's extensions come from :func:`sign_node_cert`, never from the CSR.
    """
    problems: list[str] = []
    if not csr.is_signature_valid:
        problems.append("CSR signature does not verify against its own public key")
    actual = key_type_of(csr)
    if actual != key_type:
        problems.append(f"CSR public key is {actual}, expected {key_type}")
    cn = subject_cn(csr.subject)
    if cn != node_id:
        got = "no single CN" if cn is None else f"CN {cn!r}"
        problems.append(f"CSR subject has {got}, expected CN {node_id!r}")
    allowed = node_general_names(node_id, allowed_addresses)
    try:
        requested: list[x509.GeneralName] = list(
            csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        )
    except x509.ExtensionNotFound:
        requested = []
    except (ValueError, x509.DuplicateExtension) as exc:
        problems.append(f"CSR extensions are malformed: {exc}")
        requested = []
    allowed_text = ", ".join(describe_name(n) for n in allowed)
    for name in requested:
        if name in allowed:
            continue
        if isinstance(name, x509.OtherName) and name.type_id == NODEID:
            value = decode_der_string(name.value)
            problems.append(
                f"CSR NodeID otherName is {value!r}, expected {node_id!r}" if value is not None
                else "CSR NodeID otherName is not a DER UTF8String"
            )
        else:
            problems.append(f"CSR requests {describe_name(name)}, which is not allowed (allowed: {allowed_text})")
    return problems


def node_csr_script(
    key_path: str, key_type: KeyType, node_id: str, addresses: Iterable[str], owner: str, group: str
) -> str:
    """A POSIX sh script, run on the node, that prints a PEM CSR for its key on stdout.

    If ``key_path`` does not exist, a ``key_type`` key is made first with
    ``openssl genpkey`` (umask 077, in a temporary file beside it, chown
    ``owner:group``, chmod 0600, then renamed into place). An existing key is used as
    it is (:func:`check_csr` reports a wrong type). The key itself is never printed.
    Works with OpenSSL 1.1.1 (RHEL 8) to 3.x: a minimal ``-config`` keeps the host's
    openssl.cnf (``req_extensions``, ``RANDFILE``...) out of the request.
    """
    if key_type in RSA_BITS:
        genpkey = f"-algorithm RSA -pkeyopt rsa_keygen_bits:{RSA_BITS[key_type]}"
    elif key_type in EC_CURVES:
        curve = EC_CURVES[key_type][1]
        genpkey = f"-algorithm EC -pkeyopt ec_paramgen_curve:{curve} -pkeyopt ec_param_enc:named_curve"
    else:
        raise ValueError(f"unknown key type {key_type!r} (one of {', '.join(KEY_TYPES)})")
    check_node_id(node_id)
    if not _SCRIPT_NODE_ID_RE.fullmatch(node_id):
        raise ValueError(f"node id {node_id!r} has characters openssl's -subj/-addext syntax cannot carry")
    names = node_general_names(node_id, addresses)
    san = ",".join(describe_name(n) for n in names[:-1]) + ("," if len(names) > 1 else "")
    san += f"otherName:{NODEID_OID};UTF8:{node_id}"
    q = shlex.quote
    config = ("[ req ]", "distinguished_name = req_dn", "string_mask = utf8only", "prompt = no",
              "[ req_dn ]", "CN = unused")
    return "\n".join([
        "set -eu",
        "umask 077",
        f"key={q(key_path)}",
        "tmp= conf=",
        'trap \'rm -f -- ${tmp:+"$tmp"} ${conf:+"$conf"}\' EXIT',
        'if [ ! -e "$key" ]; then',
        '  tmp=$(mktemp "$(dirname -- "$key")/.meshctl-key.XXXXXX")',
        # genpkey writes the key to the file only; its stderr (progress dots on 1.1.1)
        # is shown only when it fails.
        f'  if ! out=$(openssl genpkey {genpkey} -out "$tmp" 2>&1); then',
        "    printf '%s\\n' \"$out\" >&2; exit 1",
        "  fi",
        f'  chown -- {q(f"{owner}:{group}")} "$tmp"',
        '  chmod 0600 -- "$tmp"',
        '  mv -f -- "$tmp" "$key"',
        "  tmp=",
        "fi",
        "conf=$(mktemp)",
        "printf '%s\\n' " + " ".join(q(line) for line in config) + ' > "$conf"',
        'openssl req -new -batch -sha256 -config "$conf" -key "$key"'
        f" -subj {q('/CN=' + node_id)} -addext {q('subjectAltName=' + san)}",
        "",
    ])
