"""The certificate backend cache: one backend per topology and run."""

from __future__ import annotations


def test_backend_cache_never_hands_one_topology_another_meshs_backend(plugins, tmp_path):
    # Keyed by id(topology) alone, a collected topology's backend went to the next one
    # that reused its id: certificates from the wrong CA.
    import gc

    from meshctl.core.topology import parse_topology
    from meshctl.plugins.cert_backends import backend_for

    for i in range(30):
        text = (f"mesh: m{i}\ncertificates: {{state_dir: {tmp_path / str(i)}}}\n"
                "nodes:\n  - {name: e1, role: execution, listener: {port: 27199}}\n")
        topo = parse_topology(text, "mesh.yml", plugins)
        backend = backend_for(plugins, topo, topo.node("e1"))
        assert backend.dir == tmp_path / str(i), i
        del topo, backend
        gc.collect()
