"""pytest fixtures; the helpers themselves live in ``_helpers.py`` (importable by tests)."""

from _helpers import minilm_dir  # noqa: F401  (a fixture)
