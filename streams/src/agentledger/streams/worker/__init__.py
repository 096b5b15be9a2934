"""The budget worker (`agentledger worker`): pricing, rollups, budgets, loop detection, enforcement."""
