"""Traffic tools: replay a click log and generate synthetic clicks through the collector."""
