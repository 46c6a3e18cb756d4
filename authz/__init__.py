"""authz: the authorization service behind the CCQ online services."""

__all__ = ["__version__"]

__version__ = "0.1.0"
