"""Runnable examples shipped with the package, so ``extapi-kit demo`` works from a wheel.

Nothing here is part of the library's API: read the code, copy what fits. The repository's
top-level ``examples/`` folder holds the smaller single-file examples and points here for the
studio.
"""
