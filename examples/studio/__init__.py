"""The studio example now ships inside the package: ``src/extapi_kit/examples/studio/``.

``extapi-kit demo`` runs it from an installed wheel too. The modules here only re-export the
packaged ones, so ``from examples.studio.app import create_app`` keeps working in a checkout.
"""
