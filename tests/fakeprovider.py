"""Moved to ``agentledger.demo.provider`` (the demo serves its framework agent with it); this
name stays for the tests, the benchmarks and ``python tests/fakeprovider.py --port 8765``."""

from agentledger.demo.provider import ANSWER, FakeProvider, FixedUsage, _Handler, _tool_call, main  # noqa: F401

if __name__ == "__main__":
    main()
