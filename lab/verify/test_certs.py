"""Certificates on every mesh node, checked with the node's own openssl."""

from __future__ import annotations

TLS = "/etc/receptor/tls"
CA = f"{TLS}/ca/mesh-CA.crt"


def test_certificate_chains_to_the_mesh_ca(host, node):
    out = host.check_output(f"openssl verify -CAfile {CA} {TLS}/{node['name']}.crt")
    assert out == f"{TLS}/{node['name']}.crt: OK"


def test_certificate_carries_node_id_names_and_usages(host, node):
    text = host.check_output(f"openssl x509 -in {TLS}/{node['name']}.crt -noout -subject "
                             "-ext subjectAltName,keyUsage,extendedKeyUsage")
    assert f"subject=CN = {node['name']}" in text
    assert f"othername: 1.3.6.1.4.1.2312.19.1::{node['name']}" in text
    assert f"IP Address:{node['address']}" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert "Digital Signature" in text


def test_key_matches_certificate(host, node):
    cert_pub = host.check_output(f"openssl x509 -in {TLS}/{node['name']}.crt -noout -pubkey")
    key_pub = host.check_output(f"openssl pkey -in {TLS}/{node['name']}.key -pubout")
    assert cert_pub == key_pub and "BEGIN PUBLIC KEY" in key_pub


def test_owners_and_modes(host, node):
    for path, mode in ((f"{TLS}/{node['name']}.crt", 0o640), (f"{TLS}/{node['name']}.key", 0o600), (CA, 0o640)):
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("awx", "awx", mode), path
    assert not host.file(f"{TLS}/{node['name']}.key.new").exists


def test_work_public_key_only_on_execution_nodes(host, node):
    f = host.file("/etc/receptor/work_public_key.pem")
    if node["role"] == "execution":
        assert f.exists and (f.user, f.mode) == ("awx", 0o640)
        assert f.contains("BEGIN PUBLIC KEY")
    else:
        assert not f.exists


def test_work_private_key_only_on_control_nodes(host, node):
    f = host.file("/etc/receptor/work_private_key.pem")
    if node["role"] == "control":
        assert f.exists and (f.user, f.group, f.mode) == ("awx", "awx", 0o600)
    else:
        assert not f.exists
