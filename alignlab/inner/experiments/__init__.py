"""The inner-alignment experiments, one module each with a config dataclass, ``run(config)``, ``table(results)``
and ``plot(results)``; ``alignlab inner run NAME`` runs one (see :mod:`alignlab.inner.cli`)."""
