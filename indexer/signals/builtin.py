"""Importing this module registers every signal that ships with reunite.

Optional plug-ins (ONNX models loaded from a local path) register themselves
when configured; they are not imported here.
"""

from indexer.signals import (
    faces,  # noqa: F401
    hashes,  # noqa: F401
    local,  # noqa: F401
    scene,  # noqa: F401
    sface,  # noqa: F401
    text,  # noqa: F401  (registers only when the rapidocr wheel is installed)
)
