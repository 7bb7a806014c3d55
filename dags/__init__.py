"""Airflow DAGs for landing, nightly billing and backfills."""
