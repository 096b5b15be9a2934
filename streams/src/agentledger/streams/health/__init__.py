"""The health worker (`agentledger health`): quality drift, canary verdicts, provider failover."""
