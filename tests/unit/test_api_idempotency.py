"""IdClaims: one write per id in a process, and a failed write leaves the id free."""

from __future__ import annotations

import asyncio

from agentledger.api.idempotency import IdClaims


def test_concurrent_calls_with_one_id_write_once_and_share_the_value() -> None:
    store: dict[str, str] = {}
    writes: list[str] = []

    async def write() -> str:
        writes.append("w")
        await asyncio.sleep(0.05)  # the produce
        store["a"] = f"value-{len(writes)}"
        return store["a"]

    async def main() -> list[tuple[str, bool]]:
        claims: IdClaims[str] = IdClaims()
        return await asyncio.gather(*(claims.once("a", store.get, write) for _ in range(5)))

    got = asyncio.run(main())
    assert writes == ["w"]
    assert sorted(got) == [("value-1", False)] * 4 + [("value-1", True)]


def test_a_failed_write_lets_the_waiting_retry_write() -> None:
    store: dict[str, str] = {}
    attempts: list[int] = []

    async def write() -> str:
        attempts.append(1)
        await asyncio.sleep(0.05)
        if len(attempts) == 1:
            raise TimeoutError("broker away")
        store["a"] = "written"
        return "written"

    async def main() -> list[object]:
        claims: IdClaims[str] = IdClaims()
        return await asyncio.gather(
            *(claims.once("a", store.get, write) for _ in range(2)), return_exceptions=True
        )

    first, second = asyncio.run(main())
    assert isinstance(first, TimeoutError)
    assert second == ("written", True) and len(attempts) == 2
