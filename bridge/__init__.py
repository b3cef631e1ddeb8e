"""canvas-bridge: Canvas LMS Live Events from a raw Kafka topic to typed topics."""

__version__ = "0.1.0"
