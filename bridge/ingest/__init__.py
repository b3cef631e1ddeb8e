"""Canvas's delivery into the raw topic: the hop before ``canvas.raw``.

Canvas never writes to Kafka: a Data Services subscription delivers to an HTTPS endpoint or an
SQS queue. Every ingest path writes what Canvas sent, after authentication, to the raw topic
through one writer (``bridge.ingest.writer.RawWriter``) and acknowledges Canvas only once the
broker holds the record. Ingest does not decode, normalize or route: the bridge does, so that a
bug there can be fixed and the raw topic replayed.

- ``raw``: the pure part: the record key read from the event, and the ingest headers;
- ``writer``: the producer side: size limit, acks=all, idempotence, the acknowledgement timeout;
- ``https``: ``canvas-bridge ingest``'s routes (``POST /events``, ``POST /caliper``) and the
  verification of Canvas-signed deliveries; ``jwks``: Instructure's keys; ``caliper``: the Caliper
  Sensor API's tokens and envelope check; ``service``: the command's lifecycle.
"""
