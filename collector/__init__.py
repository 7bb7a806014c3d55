"""The click collector: an HTTP API that validates clicks and writes them to Kafka."""
