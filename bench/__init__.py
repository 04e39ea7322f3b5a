"""Benchmarks for extapi_kit (``nox -s bench``)."""
