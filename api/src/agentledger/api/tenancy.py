"""Who may see and change a record whose selector names a tenant, or ``*`` for every tenant
(budget policies, objectives): the one rule the routers share, and the reads and writes of
such records on their compacted topic under that rule.

A tenant key sees its tenant's records and the global ones (they apply to it too); it changes
only its tenant's. A global record is changed by an all-tenant key alone. Records that always
name one tenant (tool policies, rollouts) follow the same rules (for them ``visible`` and
``owned`` are ``ApiKey.sees``).
"""

from __future__ import annotations

from typing import Protocol, TypeVar, cast

from pydantic import BaseModel

from agentledger.api.auth import check_tenant
from agentledger.api.errors import ForbiddenError
from agentledger.api.kafka import Publisher, Record
from agentledger.api.keys import ApiKey
from agentledger.errors import NotFoundError
from agentledger.wire import dump

EVERY_TENANT = "*"


class _Selector(Protocol):
    @property
    def tenant(self) -> str: ...


class _Selected(Protocol):
    @property
    def selector(self) -> _Selector: ...


R = TypeVar("R", bound=_Selected)


class View(Protocol[R]):
    """The records of one kind by id: a ``CompactedView``, or one kind's slice of a shared one."""

    def get(self, key: str) -> R | None: ...

    def put(self, key: str, value: R) -> None: ...

    def remove(self, key: str) -> None: ...


def tenant_of(selector_tenant: str) -> str | None:
    """The tenant a record belongs to; ``*`` (every tenant) belongs to no single tenant."""
    return None if selector_tenant == EVERY_TENANT else selector_tenant


def visible(key: ApiKey, selector_tenant: str) -> bool:
    """Whether ``key`` may see the record: its tenant's, or a global one."""
    return key.tenant is None or tenant_of(selector_tenant) in (key.tenant, None)


def owned(key: ApiKey, selector_tenant: str) -> bool:
    """Whether ``key`` may change or delete the record (a global one needs an all-tenant key)."""
    return key.tenant is None or tenant_of(selector_tenant) == key.tenant


def check_writer(key: ApiKey, selector_tenant: str) -> None:
    """Refuse (403) a record a tenant key may not write: a global one, or another tenant's."""
    if key.tenant is not None:
        if selector_tenant == EVERY_TENANT:
            raise ForbiddenError(f"a key bound to {key.tenant!r} must set selector.tenant to it")
        check_tenant(key, selector_tenant, "selector.tenant")


def get_visible(key: ApiKey, view: View[R], record_id: str, noun: str) -> R:
    """The record, or 404 when there is none or ``key`` may not see it (not 403: a tenant key
    learns nothing of another tenant's ids)."""
    record = view.get(record_id)
    if record is None or not visible(key, record.selector.tenant):
        raise NotFoundError(f"no {noun} {record_id!r}")
    return record


async def put_owned(
    key: ApiKey,
    publisher: Publisher,
    view: View[R],
    topic: str,
    record_id: str,
    record: R,
    noun: str,
    topic_key: str | None = None,
) -> None:
    """Create or replace a record ``key`` may write and, if it exists, owns; acknowledged on
    the topic (under ``topic_key``, by default the id) before the view shows it."""
    check_writer(key, record.selector.tenant)
    existing = view.get(record_id)
    if existing is not None and not owned(key, existing.selector.tenant):
        raise ForbiddenError(f"{noun} {record_id!r} belongs to another tenant or to every tenant")
    await publisher.send([Record(topic, topic_key or record_id, dump(cast(BaseModel, record)))])
    view.put(record_id, record)


async def delete_owned(
    key: ApiKey,
    publisher: Publisher,
    view: View[R],
    topic: str,
    record_id: str,
    noun: str,
    topic_key: str | None = None,
) -> None:
    """Write the tombstone of a record ``key`` owns (404 when it does not see it, 403 when it
    sees a global one it may not change), under ``topic_key`` (by default the id)."""
    existing = get_visible(key, view, record_id, noun)
    if not owned(key, existing.selector.tenant):
        raise ForbiddenError(
            f"{noun} {record_id!r} applies to every tenant: an all-tenant admin key deletes it"
        )
    await publisher.send([Record(topic, topic_key or record_id, None)])
    view.remove(record_id)
