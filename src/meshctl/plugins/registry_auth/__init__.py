"""Container registry credentials and registry files for execution nodes.

Registered here as the home of the registry support; its hooks arrive with
registry authentication.
"""

from __future__ import annotations
