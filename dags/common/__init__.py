"""Helpers shared by the DAG files: settings, task defaults, Spark and Delta reads."""
