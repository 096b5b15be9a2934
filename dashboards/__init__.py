"""agentledger.dashboards."""
