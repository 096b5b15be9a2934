"""Dashboard sign-in on a running API (real broker, real key store): a signed session that is
not the key, read scope required, CSRF on the form, sign-out, one-time links, and the security
headers on every /ui page."""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import orjson
import pytest
from fastapi import FastAPI

from agentledger.admin import create_topics
from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.keys import KeyStore, split_token
from agentledger.api.sessions import DashboardSignIn
from agentledger.api.testing import ApiServer, land_demo_warehouse, standard_keys
from agentledger.settings import Settings
from agentledger.warehouse.reader import WarehouseReader

pytestmark = pytest.mark.integration


@dataclass
class Running:
    url: str
    keys: dict[str, str]
    app: FastAPI
    keys_path: str

    @property
    def sign_in(self) -> DashboardSignIn:
        sign_in: DashboardSignIn = self.app.state.sign_in
        return sign_in

    def key_id(self, role: str) -> str:
        parts = split_token(self.keys[role])
        assert parts is not None
        return parts[0]


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    home = tmp_path_factory.mktemp("signin")
    prefix = f"t{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(kafka_bootstrap, prefix=prefix))
    land_demo_warehouse(str(home / "wh"))
    keys = standard_keys(home / "keys.sqlite")
    app = create_app(
        Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, home=home),
        ApiSettings(keys_path=home / "keys.sqlite"),
        warehouse=WarehouseReader(str(home / "wh")),
    )
    with ApiServer(app) as url:
        yield Running(url, keys, app, str(home / "keys.sqlite"))


def sign_in_with_form(api: Running, role: str, next_path: str = "/ui/overview") -> httpx.Response:
    with httpx.Client(base_url=api.url, timeout=30) as browser:
        form = browser.get("/ui/login")
        assert form.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        return browser.post(
            "/ui/login", data={"key": api.keys[role], "csrf": csrf.group(1), "next": next_path}
        )


def session_cookie(response: httpx.Response) -> str:
    value = response.cookies.get("agentledger_session")
    assert value, response.headers.get("set-cookie")
    return value


def page(api: Running, cookie: str, path: str = "/ui/overview") -> httpx.Response:
    return httpx.get(api.url + path, cookies={"agentledger_session": cookie}, timeout=30)


def test_form_sign_in_gives_a_session_that_is_not_the_key(api: Running) -> None:
    response = sign_in_with_form(api, "acme_read", "/ui/trace")
    assert response.status_code == 303 and response.headers["location"] == "/ui/trace"
    cookie = session_cookie(response)
    secret = api.keys["acme_read"].rsplit("_", 1)[1]
    assert api.keys["acme_read"] not in cookie and secret not in cookie
    payload = base64.urlsafe_b64decode(cookie.split(".")[1] + "==")
    assert secret.encode() not in payload and orjson.loads(payload)["k"] == api.key_id("acme_read")
    set_cookie = response.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie and "path=/ui" in set_cookie
    assert "secure" not in set_cookie  # plain http and the setting off
    assert page(api, cookie).status_code == 200
    assert page(api, cookie, "/ui/overview?tenant=globex").status_code == 403  # still acme's key
    # The session opens read-only pages only, never the API.
    assert httpx.get(f"{api.url}/v1/costs", cookies={"agentledger_session": cookie}).status_code == 401
    admin = session_cookie(sign_in_with_form(api, "admin"))
    kill = {"scope": {"kind": "tenant", "tenant": "acme"}, "action": "kill", "reason": "csrf"}
    posted = httpx.post(
        f"{api.url}/v1/control", json=kill, cookies={"agentledger_session": admin}, timeout=30
    )
    assert posted.status_code == 401  # a write always needs the header: no CSRF through the cookie


def test_ingest_only_and_unknown_keys_cannot_sign_in(api: Running) -> None:
    for role, status in (("acme_ingest", 403), ("globex_ingest", 403)):
        response = sign_in_with_form(api, role)
        assert response.status_code == status and "read" in response.text
        assert "agentledger_session" not in response.cookies
    api.keys["bogus"] = "al_nope_nope"
    response = sign_in_with_form(api, "bogus")
    assert response.status_code == 401 and "agentledger_session" not in response.cookies


def test_sign_in_needs_the_forms_csrf_token(api: Running) -> None:
    # A page on another site can post the form, but has neither our cookie nor its token.
    forged = httpx.post(
        f"{api.url}/ui/login", data={"key": api.keys["admin"], "csrf": "x", "next": "/ui/overview"}
    )
    assert forged.status_code == 403 and "agentledger_session" not in forged.cookies
    with httpx.Client(base_url=api.url, timeout=30) as browser:
        browser.get("/ui/login")
        wrong = browser.post("/ui/login", data={"key": api.keys["admin"], "csrf": "x"})
        assert wrong.status_code == 403 and "agentledger_session" not in wrong.cookies


def test_a_key_in_the_url_is_refused_and_next_stays_on_ui(api: Running) -> None:
    assert httpx.get(f"{api.url}/ui/login", params={"key": api.keys["acme_read"]}).status_code == 400
    assert httpx.get(f"{api.url}/ui/login", params={"next": "https://evil.example/"}).status_code == 422
    response = sign_in_with_form(api, "acme_read", "https://evil.example/")
    assert response.status_code == 303 and response.headers["location"] == "/ui/overview"


def test_sign_out_ends_the_session_even_for_a_copied_cookie(api: Running) -> None:
    cookie = session_cookie(sign_in_with_form(api, "acme_read"))
    assert page(api, cookie).status_code == 200
    out = httpx.post(f"{api.url}/ui/logout", cookies={"agentledger_session": cookie}, timeout=30)
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert (
        'agentledger_session=""' in out.headers["set-cookie"]
        and "max-age=0" in out.headers["set-cookie"].lower()
    )
    assert page(api, cookie).status_code == 401


def test_expired_tampered_and_revoked_sessions_are_refused(api: Running) -> None:
    signer = api.sign_in.signer
    expired, _ = signer.issue(api.key_id("acme_read"), now=time.time() - signer.ttl_s - 1)
    assert page(api, expired).status_code == 401
    good = session_cookie(sign_in_with_form(api, "acme_read"))
    version, payload, mac = good.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=="))
    forged = base64.urlsafe_b64encode(orjson.dumps({**claims, "k": api.key_id("admin")})).rstrip(b"=")
    assert page(api, f"{version}.{forged.decode()}.{mac}").status_code == 401
    assert page(api, "al_x_y").status_code == 401
    # An old-style cookie holding a raw key opens nothing any more.
    assert (
        httpx.get(f"{api.url}/ui/overview", cookies={"agentledger_key": api.keys["admin"]}).status_code == 401
    )
    # Revoking the key closes its sessions at once.
    cookie = session_cookie(sign_in_with_form(api, "globex_read"))
    assert page(api, cookie).status_code == 200
    store = KeyStore(__import__("pathlib").Path(api.keys_path))
    try:
        store.revoke(api.key_id("globex_read"))
    finally:
        store.close()
    assert page(api, cookie).status_code == 401


def test_a_one_time_link_works_once(api: Running) -> None:
    token = api.sign_in.store.issue_link(api.key_id("acme_read"), ttl_s=60)
    first = httpx.get(f"{api.url}/ui/link", params={"token": token, "next": "/ui/providers"}, timeout=30)
    assert first.status_code == 303 and first.headers["location"] == "/ui/providers"
    assert page(api, session_cookie(first), "/ui/providers").status_code == 200
    again = httpx.get(f"{api.url}/ui/link", params={"token": token}, timeout=30)
    assert again.status_code == 401 and "agentledger_session" not in again.cookies
    old = api.sign_in.store.issue_link(api.key_id("acme_read"), ttl_s=60, now=time.time() - 120)
    assert httpx.get(f"{api.url}/ui/link", params={"token": old}, timeout=30).status_code == 401
    ingest = api.sign_in.store.issue_link(api.key_id("acme_ingest"), ttl_s=60)
    assert httpx.get(f"{api.url}/ui/link", params={"token": ingest}, timeout=30).status_code == 403


def test_a_browser_without_a_session_is_sent_to_the_form(api: Running) -> None:
    html = {"accept": "text/html,application/xhtml+xml"}
    response = httpx.get(f"{api.url}/ui/agent", params={"name": "planner"}, headers=html, timeout=30)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=%2Fui%2Fagent%3Fname%3Dplanner"
    assert httpx.get(f"{api.url}/ui/agent", timeout=30).status_code == 401  # API clients: 401
    with_bad_key = {**html, "authorization": "Bearer al_x_y"}
    assert httpx.get(f"{api.url}/ui/overview", headers=with_bad_key, timeout=30).status_code == 401


def test_secure_flag_when_the_setting_asks(api: Running) -> None:
    api.sign_in.secure_cookies = True
    try:
        response = sign_in_with_form(api, "acme_read")
    finally:
        api.sign_in.secure_cookies = False
    assert "; secure" in response.headers["set-cookie"].lower()


def test_security_headers_on_every_ui_page(api: Running) -> None:
    cookie = session_cookie(sign_in_with_form(api, "acme_read"))
    for path in ("/ui/overview", "/ui/agent", "/ui/trace", "/ui/providers", "/ui/timeline", "/ui/login"):
        response = page(api, cookie, path)
        assert response.status_code == 200, path
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-content-type-options"] == "nosniff"
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "unsafe-eval" not in csp
        scripts = re.findall(r"<script([^>]*)>", response.text)
        nonce = re.search(r"'nonce-([^']+)'", csp)
        # every inline script carries this response's nonce; the only other one is plotly.min.js
        for attrs in scripts:
            assert 'src="/ui/plotly.min.js"' in attrs or (nonce and f'nonce="{nonce.group(1)}"' in attrs), (
                attrs
            )
    first, second = page(api, cookie), page(api, cookie)
    assert (
        first.headers["content-security-policy"] != second.headers["content-security-policy"]
    )  # fresh nonce
    assert httpx.get(f"{api.url}/ui/overview").headers["x-frame-options"] == "DENY"  # on the 401 too
