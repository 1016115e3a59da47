"""Thin Prefect tasks, one pipeline stage each; they call mixnn_core and pass paths."""
