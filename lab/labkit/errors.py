"""The one exception type labkit raises."""


class LabError(RuntimeError):
    """A lab step failed; the message says which step and where to look."""
