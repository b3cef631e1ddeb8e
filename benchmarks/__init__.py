"""canvas-bridge's benchmarks: scripts that print figures, each with a baseline measured in the same
run (see benchmarks/README.md), and the parts they share:

- ``common``: paths, the catalog, logging, the event loop, the machine, the local broker and
  ElasticMQ (the tests' helpers);
- ``naive``: the one naive baseline, the yardstick of every "x naive" figure;
- ``procs``: process sampling (CPU, memory, connections from /proc) and the subprocesses;
- ``drain``: the one drain loop the baseline drainers run, given a transform function, and
  the timing of a drain;
- ``latency``, ``phases``, ``report``, ``mix``, ``topics``: the end-to-end benchmark's parts.
"""
