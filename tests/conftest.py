"""pytest fixtures; the helpers themselves live in ``_helpers.py`` (importable by tests)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from _helpers import minilm_dir  # noqa: F401  (a fixture)


@pytest.fixture(scope="session", autouse=True)
def _subprocess_tmpdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Processes the tests start (torchrun workers, runs killed on purpose) get a TMPDIR
    under pytest's own temporary folder: what a killed process cannot clean up stays
    there instead of piling up in /tmp."""
    folder = tmp_path_factory.mktemp("subprocess-tmp")
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(folder)
    yield
    if old is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = old
