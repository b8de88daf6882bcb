"""ncr-trio: a self-hosted OCI container registry on Trio with a native streaming hasher."""

__version__ = "0.1.0"
__all__ = ["__version__"]
