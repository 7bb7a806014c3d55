"""Batch layer: raw clicks in Delta Lake and the authoritative recompute."""
