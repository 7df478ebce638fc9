"""labkit: throwaway sshd hosts (podman containers running systemd) for meshctl's tests.

Typical use::

    env = prepare_host(workdir)
    image = build_base_image(workdir, env)
    create_network("t1-net", "10.89.231.0/24", env=env)
    host = start_host("t1-node", image, [("t1-net", "10.89.231.10")], pubkey, env=env)
    wait_for_ssh(host.address, key_path, env=env)
    ...
    remove_hosts(["t1-node"], env=env); remove_network("t1-net", env=env)
"""

from labkit.errors import LabError
from labkit.hostprep import podman, prepare_host
from labkit.hosts import (
    Host,
    assert_lab_address,
    connect_network,
    create_network,
    free_subnets,
    host_key,
    remove_hosts,
    remove_network,
    remove_prefixed,
    ssh_keypair,
    start_host,
    wait_for_ssh,
)
from labkit.image import build_base_image, image_status
from labkit.registry import (
    REGISTRY_IMAGE,
    RegistryInfo,
    build_registry_image,
    push_image,
    registry_check,
    registry_image_status,
    remove_registry,
    start_registry,
)

__all__ = [
    "Host",
    "REGISTRY_IMAGE",
    "RegistryInfo",
    "assert_lab_address",
    "connect_network",
    "LabError",
    "build_base_image",
    "build_registry_image",
    "create_network",
    "free_subnets",
    "host_key",
    "image_status",
    "podman",
    "prepare_host",
    "push_image",
    "registry_check",
    "registry_image_status",
    "remove_hosts",
    "remove_network",
    "remove_prefixed",
    "remove_registry",
    "ssh_keypair",
    "start_host",
    "start_registry",
    "wait_for_ssh",
]
