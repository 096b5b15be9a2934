"""``agentledger demo``: the whole product on a local broker, on a clock a newcomer can watch.

The demo sits at the top of the stack, like the CLI: it starts the layers as processes
(``python -m agentledger worker`` ...) and drives a workload through the tiny client.
"""
