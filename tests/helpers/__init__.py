"""Importable modules the tests use (a model function defined in an imported module, and so on)."""
