"""agentledger.api."""
