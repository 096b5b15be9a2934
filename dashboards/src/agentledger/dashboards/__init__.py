"""agentledger.dashboards: pure ``rows -> plotly Figure`` functions and page assembly."""
