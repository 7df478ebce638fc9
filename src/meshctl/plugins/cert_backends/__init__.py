"""Certificate backends (``certificates.backend`` in mesh.yml).

Registered here as the home of the built-in backends; the backends themselves
(selfsigned, file, awx-bundle) arrive with certificate issuance.
"""

from __future__ import annotations
