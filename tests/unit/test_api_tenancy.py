"""The tenant rule budget policies and objectives share (agentledger.api.tenancy): a tenant
key sees its own and the global records, and writes only its own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentledger.api.errors import ForbiddenError
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.api.tenancy import check_writer, owned, visible


def _key(tenant: str | None) -> ApiKey:
    return ApiKey("k1", "test", frozenset({KeyScope.ADMIN}), tenant, datetime.now(UTC))


def test_a_tenant_key_sees_its_own_and_global_records_and_owns_only_its_own() -> None:
    acme = _key("acme")
    assert visible(acme, "acme") and visible(acme, "*") and not visible(acme, "globex")
    assert owned(acme, "acme") and not owned(acme, "*") and not owned(acme, "globex")


def test_an_all_tenant_key_sees_and_owns_everything() -> None:
    root = _key(None)
    for tenant in ("acme", "globex", "*"):
        assert visible(root, tenant) and owned(root, tenant)
        check_writer(root, tenant)


def test_a_tenant_key_writes_its_own_tenant_only() -> None:
    acme = _key("acme")
    check_writer(acme, "acme")
    with pytest.raises(ForbiddenError, match=r"must set selector\.tenant"):
        check_writer(acme, "*")
    with pytest.raises(ForbiddenError, match=r"bound to tenant 'acme'; selector\.tenant names 'globex'"):
        check_writer(acme, "globex")
