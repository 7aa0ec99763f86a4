"""Shared test helpers, importable from every tier (``pythonpath = ["tests"]`` in pyproject.toml)."""
