"""agentledger.streams."""
