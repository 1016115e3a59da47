"""Prefect flows of mixnn; ``flows.mixnn_flow.mixnn`` is the flow behind ``clean-dataset``."""
