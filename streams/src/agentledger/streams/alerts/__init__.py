"""The alert dispatcher (`agentledger alerts`): alert lifecycle and delivery to Slack, PagerDuty and webhooks."""
