"""Chaos suite: real broker, real bridge processes, SIGKILL/SIGTERM and broker restarts.

Run: ``python -m pytest -q -s tests/chaos`` (``-s`` shows one ``CHAOS <name>: ...`` line per scenario).
"""
