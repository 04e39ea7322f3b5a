"""The "studio" example platform that ``extapi-kit demo`` serves.

Read it in this order: :mod:`.internal` (the internal service, more endpoints than should ever be
public), :mod:`.external` (the curated public ``/api/v1`` declared with ``ExternalAPI``),
:mod:`.app` (the composition: stores, webhooks, admin console, the render-farm tool) and
:mod:`.demo` (bootstrap an admin key, print the banner, serve). ``python -c "import
extapi_kit.examples.studio as s; print(s.__path__[0])"`` shows where the files are installed.
"""
