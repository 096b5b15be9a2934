"""The version every agentledger distribution shares (one release train)."""

__version__ = "0.1.0"
