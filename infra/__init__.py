"""Local infrastructure: the Kafka broker, topics, child processes and the CLI."""
