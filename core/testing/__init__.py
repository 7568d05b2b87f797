"""pfnmap.testing: the pytest plugin, fixtures and conformance kit for arch plugins.

Installed with pfnmap and registered as the pytest plugin ``pfnmap`` (the ``pytest11`` entry
point). It is cheap until used: it adds options and fixtures, and the conformance kit runs
only when asked for::

    python -m pfnmap.testing riscv-sv39          # the kit on one arch, nothing else
    pytest --pfnmap-conformance=riscv-sv39       # the kit added to a pytest run
    pytest tests --pfnmap-conformance=all        # your tests, and the kit on every arch

Modules: :mod:`pfnmap.testing.plugin` (options, fixtures, collection of the kit),
:mod:`pfnmap.testing.conformance` (the kit itself), :mod:`pfnmap.testing.tables` (synthetic
page tables), :mod:`pfnmap.testing.machines` (where arches come from; the end-of-test audit).
Importing this package imports nothing else.
"""
