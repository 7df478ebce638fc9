"""Receptor mesh certificates: keys, names, issuing, CSRs and inspection.

Pure functions over ``cryptography`` objects: no SSH, no plugin code. The contract is
the "Certificates" section of the receptor-mesh reference. Each module is importable on
its own; this package gathers their public names.
"""

from meshctl.core.pki.csr import check_csr, csr_for, node_csr_script
from meshctl.core.pki.inspect import CertStatus, inspect_cert
from meshctl.core.pki.issue import BACKDATE, create_ca, issue_node_cert, sign_node_cert
from meshctl.core.pki.keys import (
    KEY_TYPES,
    KeyType,
    NodeKey,
    generate_key,
    key_to_pem,
    key_type_of,
    key_type_of_public_pem,
    load_cert,
    load_certs,
    load_csr,
    load_private_key,
    public_key_pem,
    spki_der,
    work_signing_keypair,
)
from meshctl.core.pki.names import NODEID_OID, ca_common_name, node_general_names, parse_address

__all__ = [
    "BACKDATE", "KEY_TYPES", "NODEID_OID", "CertStatus", "KeyType", "NodeKey", "ca_common_name",
    "check_csr", "create_ca", "csr_for", "generate_key", "inspect_cert", "issue_node_cert", "key_to_pem",
    "key_type_of", "key_type_of_public_pem", "load_cert", "load_certs", "load_csr", "load_private_key",
    "node_csr_script", "node_general_names", "parse_address", "public_key_pem", "sign_node_cert", "spki_der",
    "work_signing_keypair",
]
