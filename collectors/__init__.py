"""agentledger.collectors."""
