"""Who may see and change a record whose selector names a tenant, or ``*`` for every tenant
(budget policies, objectives): the one rule the routers share.

A tenant key sees its tenant's records and the global ones (they apply to it too); it changes
only its tenant's. A global record is changed by an all-tenant key alone. Records that always
name one tenant (tool policies, rollouts) need no more than ``ApiKey.sees`` and ``check_tenant``.
"""

from __future__ import annotations

from agentledger.api.auth import check_tenant
from agentledger.api.errors import ForbiddenError
from agentledger.api.keys import ApiKey

EVERY_TENANT = "*"


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
