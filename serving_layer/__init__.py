"""Serving layer: DuckDB merge of speed and batch results and the query API."""
