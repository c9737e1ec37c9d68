from __future__ import annotations

# The simulator process and its receiver, shared with the dispatch tests.
from tests.dispatch.conftest import _receiver, _simulator_process, sim  # noqa: F401
