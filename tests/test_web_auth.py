"""Login, logout, roles, the first admin, throttling and session ending, through the Flask
test client against a real database."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from conftest import PASSWORD, csrf_token, log_in, make_user
from mxsmtp_web import create_app
from mxsmtp_web.store import accounts


def test_logged_out_users_are_sent_to_login(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 302 and "/login" in response.location
    page = client.get("/login").get_data(as_text=True)
    assert "Username" in page and "Password" in page and "Remember me" in page


def test_first_start_creates_admin_with_a_password_to_change(
    instance: object, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app({"TESTING": True})
    printed = capsys.readouterr().out
    password = re.search(r"with password '([^']+)'", printed).group(1)
    create_app({"TESTING": True})
    assert "Created the first web admin" not in capsys.readouterr().out  # printed once
    client = app.test_client()
    assert log_in(client, "admin", password).status_code == 302
    response = client.get("/")
    assert response.status_code == 302 and response.location.endswith("/account/password")
    token = csrf_token(client, "/account/password")
    response = client.post(
        "/account/password",
        data={
            "current": password,
            "new": "my own secret",
            "confirm": "my own secret",
            "csrf_token": token,
        },
    )
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_wrong_password_is_shown_next_to_the_field(app: Flask, client: FlaskClient) -> None:
    make_user(app, "ada", "admin")
    response = log_in(client, "ada", "wrong password")
    assert response.status_code == 200
    assert "Wrong username or password." in response.get_data(as_text=True)


def test_repeated_failures_lock_the_address_out(app: Flask, client: FlaskClient) -> None:
    make_user(app, "ada", "admin")
    for _ in range(accounts.MAX_FAILURES):
        log_in(client, "ada", "guess")
    response = log_in(client, "ada")  # even the right password is refused for a while
    assert response.status_code == 429
    assert "Too many failed logins" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:x"]
)
def test_next_never_leaves_the_site(app: Flask, client: FlaskClient, target: str) -> None:
    make_user(app, "ada", "admin")
    token = csrf_token(client, "/login")
    response = client.post(
        "/login",
        query_string={"next": target},
        data={"username": "ada", "password": PASSWORD, "csrf_token": token},
    )
    assert response.status_code == 302 and response.location == "/"


def test_next_leads_back_to_the_page_asked_for(app: Flask, client: FlaskClient) -> None:
    make_user(app, "ada", "admin")
    token = csrf_token(client, "/login")
    response = client.post(
        "/login",
        query_string={"next": "/account/password"},
        data={"username": "ada", "password": PASSWORD, "csrf_token": token},
    )
    assert response.location == "/account/password"


def test_login_without_csrf_token_is_refused(app: Flask, client: FlaskClient) -> None:
    make_user(app, "ada", "admin")
    response = client.post("/login", data={"username": "ada", "password": PASSWORD})
    assert response.status_code in (200, 400)
    assert client.get("/").status_code == 302


def test_logout_ends_the_session_for_good(app: Flask, admin_client: FlaskClient) -> None:
    stolen = admin_client.get_cookie("session").value
    token = csrf_token(admin_client, "/account/password")
    assert admin_client.post("/logout", data={"csrf_token": token}).status_code == 302
    thief = app.test_client()
    thief.set_cookie("session", stolen)
    assert thief.get("/").status_code == 302


def test_logout_is_not_a_get(admin_client: FlaskClient) -> None:
    assert admin_client.get("/logout").status_code == 405
    assert admin_client.get("/").status_code == 200


def test_password_change_ends_other_sessions(app: Flask, admin_client: FlaskClient) -> None:
    other = app.test_client()
    assert log_in(other, "root").status_code == 302
    token = csrf_token(admin_client, "/account/password")
    response = admin_client.post(
        "/account/password",
        data={
            "current": PASSWORD,
            "new": "brand new pass",
            "confirm": "brand new pass",
            "csrf_token": token,
        },
    )
    assert response.status_code == 302
    assert admin_client.get("/").status_code == 200  # this session goes on
    assert other.get("/").status_code == 302  # the other one ended


def test_remember_me_cookie_is_set_and_survives_the_session(
    app: Flask, client: FlaskClient
) -> None:
    make_user(app, "ada", "admin")
    log_in(client, "ada", remember="y")
    remember = client.get_cookie("remember_token")
    assert remember is not None and remember.http_only
    fresh = app.test_client()
    fresh.set_cookie("remember_token", remember.value)
    assert fresh.get("/").status_code == 200


def test_security_headers_on_every_page(admin_client: FlaskClient, client: FlaskClient) -> None:
    for response in (admin_client.get("/"), client.get("/login")):
        csp = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self' 'nonce-" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    cookie = client.get_cookie("session")
    assert cookie is None or (cookie.http_only and cookie.same_site == "Lax")


def test_friendly_404(admin_client: FlaskClient) -> None:
    response = admin_client.get("/no/such/page")
    assert response.status_code == 404 and "Not found" in response.get_data(as_text=True)


def test_browser_login_and_logout(page: object, live_server: str) -> None:
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(live_server + "/login")
    page.goto(live_server + "/")
    assert page.url.startswith(live_server + "/login")
