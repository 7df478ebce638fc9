"""Names in a node certificate: the CN, the subjectAltName with the node's DNS names and
IP addresses, and the Receptor NodeID otherName.

The NodeID is an otherName ``1.3.6.1.4.1.2312.19.1`` whose value is the DER UTF8String
of the node id (what receptor's ``MakeReceptorSAN`` writes); receptor refuses to start
when its certificate lacks it ("nodeID=... not found in certificate name(s)").
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from cryptography import x509
from cryptography.x509.oid import NameOID

NODEID_OID = "1.3.6.1.4.1.2312.19.1"  # Red Hat arc .19 = receptor, .1 = NodeID
NODEID = x509.ObjectIdentifier(NODEID_OID)

# RFC 5280 ub-common-name; cryptography and `openssl req -subj` both refuse longer CNs.
CN_MAX = 64
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)


def ca_common_name(mesh: str) -> str:
    """The mesh CA's CN, as awx-operator names it: ``<mesh> Receptor Root CA``."""
    return f"{mesh} Receptor Root CA"


def check_node_id(node_id: str) -> None:
    """ValueError unless ``node_id`` can be a certificate CN."""
    if not isinstance(node_id, str) or not 1 <= len(node_id) <= CN_MAX:
        raise ValueError(f"node id {node_id!r} must be 1..{CN_MAX} characters (it is the certificate CN)")
    if not node_id.isprintable() or node_id != node_id.strip():
        raise ValueError(f"node id {node_id!r} has control characters or surrounding spaces")


def der_utf8(text: str) -> bytes:
    """DER UTF8String (tag 12): what receptor's --cert-makereq puts in the NodeID otherName."""
    data = text.encode("utf-8")
    n = len(data)
    if n < 0x80:
        return bytes([0x0C, n]) + data
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x0C, 0x80 | len(size)]) + size + data


# Go's asn1.Unmarshal into a string accepts these tags, so receptor would too.
_DER_STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii"}


def decode_der_string(der: bytes) -> str | None:
    """The text of a DER string as receptor reads a NodeID; None when it is none."""
    if len(der) < 2 or der[0] not in _DER_STRING_TAGS:
        return None
    n, pos = der[1], 2
    if n & 0x80:
        width = n & 0x7F
        if width == 0 or width > 4 or len(der) < 2 + width:
            return None
        n, pos = int.from_bytes(der[2 : 2 + width], "big"), 2 + width
    if len(der) != pos + n:
        return None
    try:
        return der[pos:].decode(_DER_STRING_TAGS[der[0]])
    except UnicodeDecodeError:
        return None


def parse_address(address: str) -> x509.GeneralName:
    """``IP:`` for an IPv4/IPv6 address, else ``DNS:`` (lower case); ValueError for neither."""
    text = address.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]  # "[2001:db8::1]" as written in URLs
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        if getattr(ip, "scope_id", None):
            raise ValueError(f"{address!r}: a scoped IPv6 address cannot be a certificate name")
        return x509.IPAddress(ip)
    name = text.rstrip(".").lower()  # DNS is case-insensitive; certificates carry lower case
    if not _HOSTNAME_RE.match(name):
        raise ValueError(f"{address!r} is neither an IP address nor a DNS host name")
    return x509.DNSName(name)


def _addresses(addresses: Iterable[str] | str) -> list[str]:
    # A bare string would otherwise be iterated character by character.
    return [addresses] if isinstance(addresses, str) else list(addresses)


def node_general_names(node_id: str, addresses: Iterable[str]) -> list[x509.GeneralName]:
    """subjectAltName entries of a node: ``DNS:`` for host names, ``IP:`` for IPv4/IPv6
    addresses (de-duplicated, in order), then the Receptor NodeID otherName.

    The node id is *not* added as a DNS name by itself: pass it in ``addresses`` when
    peers dial the node by that name.
    """
    check_node_id(node_id)
    names: list[x509.GeneralName] = []
    for address in _addresses(addresses):
        name = parse_address(address)
        if name not in names:
            names.append(name)
    names.append(x509.OtherName(NODEID, der_utf8(node_id)))
    return names


def describe_name(name: x509.GeneralName) -> str:
    """openssl-config spelling of a name, for messages."""
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    if isinstance(name, x509.OtherName):
        value = decode_der_string(name.value)
        shown = f"UTF8:{value}" if value is not None else f"DER:{name.value.hex()}"
        return f"otherName:{name.type_id.dotted_string};{shown}"
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    if isinstance(name, x509.RegisteredID):
        return f"RID:{name.value.dotted_string}"
    if isinstance(name, x509.DirectoryName):
        return f"dirName:{name.value.rfc4514_string()}"
    return repr(name)


def cn_name(common_name: str) -> x509.Name:
    """The name ``CN=<common_name>``."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def subject_cn(name: x509.Name) -> str | None:
    """The name's CN, or None unless it has exactly one."""
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) != 1:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
