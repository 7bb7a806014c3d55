"""Rules both layers apply: click schema and validation, click identity,
time buckets, the lateness model and the platform's settings."""
