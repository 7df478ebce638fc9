"""``meshctl import aap-inventory``: an AAP installer INI inventory into mesh.yml.

Modules: ``ini`` reads the inventory (sections, host ranges, group arithmetic),
``values`` reads typed settings from its variables, ``convert`` maps hosts to mesh
nodes (the mapping is documented on :func:`aap_inventory_convert`) and ``emit``
writes mesh.yml. Every error names the inventory line (``FILE:LINE: message``).
"""

from __future__ import annotations

from meshctl.plugin import Importer, hookimpl
from meshctl.plugins.import_aap.convert import aap_inventory_convert, aap_inventory_to_yaml


@hookimpl
def meshctl_register_importers(register):
    register(Importer("aap-inventory", convert=aap_inventory_convert,
                      description="Convert an AAP installer INI inventory into mesh.yml."))


__all__ = ["aap_inventory_convert", "aap_inventory_to_yaml"]
