"""Development tooling: the local Kubernetes control plane, the real node, the processes and
servers that tests, benchmarks and the Makefile start.

A top-level package beside ``app/`` and ``operator/`` (not installed with the wheel): run from the
repository's root, ``python -m devtools.controlplane up`` and ``python -m devtools.realnode up``
are what ``make cluster`` runs; ``tests/`` (pytest fixtures) and ``bench/`` import from here.
``hack/`` keeps the shell and Go build scripts these modules call. See ``devtools/README.md``.
"""
