"""agentledger.warehouse."""
