"""mixnn_core: the MixNN method (Lu & He, arXiv 2406.16966) as a plain library, no orchestration."""
