"""spark-image-factory: versioned vLLM images for DGX Spark."""

__version__ = "0.1.0"
