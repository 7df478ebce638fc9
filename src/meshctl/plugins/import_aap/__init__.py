"""``meshctl import aap-inventory``: an AAP installer INI inventory into mesh.yml.

Modules: ``ini`` reads the inventory (sections, host ranges, group arithmetic),
``values`` reads typed settings from its variables, ``convert`` maps hosts to mesh
nodes (the mapping is documented on :func:`aap_inventory_convert`) and ``emit``
writes mesh.yml. Every error names the inventory line (``FILE:LINE: message``).
"""

from __future__ import annotations

from typing import Any

from meshctl.plugin import Importer, hookimpl


def aap_inventory_convert(path: Any) -> Any:
    # Imported on use: every meshctl command loads this plugin, few import inventories.
    from meshctl.plugins.import_aap.convert import aap_inventory_convert as convert

    return convert(path)


def aap_inventory_to_yaml(path: Any) -> str:
    from meshctl.plugins.import_aap.convert import aap_inventory_to_yaml as to_yaml

    return to_yaml(path)


@hookimpl
def meshctl_register_importers(register):
    register(Importer("aap-inventory", convert=aap_inventory_convert,
                      description="Convert an AAP installer INI inventory into mesh.yml."))


__all__ = ["aap_inventory_convert", "aap_inventory_to_yaml"]
