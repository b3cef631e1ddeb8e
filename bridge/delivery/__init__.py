"""The delivery guarantee: how a batch's outputs reach the broker and its offsets are committed.

- ``owner.Delivery``: the one owner: ``submit`` each fetch, ``drain`` at shutdown, its own
  rebalance listener; the batches in flight and the duplicate window are its own;
- ``at_least_once.AtLeastOnce`` and ``exactly_once.ExactlyOnce``: the two guarantees, one
  interface (``guarantee.Guarantee``); each module's docstring states its steps and their order;
- ``publisher``: screening (bridge/refusals.py), partitioning, sending, reading the acks;
- ``batch``: the batch, the duplicate window, the metrics of a committed batch.

In both modes, when the group took the partitions away (the commit is rejected, or the producer
fenced), the batch is abandoned: its new owner starts from the last committed offset. The Kafka
clients themselves belong to ``bridge.kafka.Clients``; failures are classified once, in
``bridge.errors``.
"""

from bridge.delivery.batch import Batch, InFlight, to_batch
from bridge.delivery.guarantee import Guarantee
from bridge.delivery.owner import Delivery
from bridge.delivery.publisher import Partitioner

__all__ = ["Batch", "Delivery", "Guarantee", "InFlight", "Partitioner", "to_batch"]
