"""The Users page: admins create, disable, enable, reset and re-role users, with guard rails
that keep at least one active admin; through the Flask test client on a real database."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from conftest import PASSWORD, csrf_token, log_in, make_user
from mxsmtp_web.store import accounts


def user_id(app: Flask, username: str) -> int:
    with app.app_context():
        user = accounts.find_user(username)
        assert user is not None
        return user.id


def user_state(app: Flask, username: str) -> tuple[str, bool, bool] | None:
    """(role, active, must change password), or None when there is no such user."""
    with app.app_context():
        user = accounts.find_user(username)
        return None if user is None else (user.role, user.active, user.must_change_password)


def post(client: FlaskClient, path: str, form_page: str, **data: Any) -> Any:
    """Submit a form as a browser would: with the CSRF token of the page the form is on."""
    return client.post(path, data={"csrf_token": csrf_token(client, form_page), **data})


def act_on(client: FlaskClient, app: Flask, username: str, action: str, **data: Any) -> Any:
    page = f"/users/{user_id(app, username)}/"
    return post(client, page + action, page, **data)


def error_next_to(page: str, field: str) -> str:
    """The error shown in the same form group as the input named `field`."""
    group = page.split(f'name="{field}"', 1)[1].split('class="form-group"', 1)[0]
    match = re.search(r'<div class="invalid-feedback d-block">([^<]+)</div>', group)
    assert match, f"no error next to {field}"
    return match.group(1)


def test_logged_out_users_go_to_login(client: FlaskClient) -> None:
    response = client.get("/users/")
    assert response.status_code == 302 and "/login" in response.location


def test_viewers_get_403_and_no_menu_entry(app: Flask, viewer_client: FlaskClient) -> None:
    assert viewer_client.get("/users/").status_code == 403
    assert viewer_client.get(f"/users/{user_id(app, 'reader')}/").status_code == 403
    token = csrf_token(viewer_client, "/account/password")
    response = viewer_client.post(
        f"/users/{user_id(app, 'reader')}/role", data={"role": "admin", "csrf_token": token}
    )
    assert response.status_code == 403
    assert user_state(app, "reader") == ("viewer", True, False)
    assert 'href="/users/"' not in viewer_client.get("/").get_data(as_text=True)


def test_the_list_shows_every_user(app: Flask, admin_client: FlaskClient) -> None:
    make_user(app, "reader", "viewer")
    page = admin_client.get("/users/").get_data(as_text=True)
    assert 'data-user="root"' in page and 'data-user="reader"' in page
    assert "(you)" in page and 'href="/account/password"' in page


def test_create_with_a_chosen_password(app: Flask, admin_client: FlaskClient) -> None:
    response = post(
        admin_client,
        "/users/",
        "/users/",
        username="carol",
        role="viewer",
        password="carols secret",
        confirm="carols secret",
    )
    assert response.status_code == 302
    assert user_state(app, "carol") == ("viewer", True, False)  # must_change left unticked
    carol = app.test_client()
    assert log_in(carol, "carol", "carols secret").status_code == 302
    assert carol.get("/").status_code == 200


def test_create_with_a_generated_password_shows_it_once(
    app: Flask, admin_client: FlaskClient
) -> None:
    response = post(
        admin_client,
        "/users/",
        "/users/",
        username="dave",
        role="admin",
        generate="y",
        must_change="y",
    )
    assert response.status_code == 200
    password = re.search(r'id="generated-password">([^<]+)<', response.get_data(as_text=True))
    assert password and len(password.group(1)) >= accounts.MIN_PASSWORD_LENGTH
    assert password.group(1) not in admin_client.get("/users/").get_data(as_text=True)
    assert user_state(app, "dave") == ("admin", True, True)
    dave = app.test_client()
    assert log_in(dave, "dave", password.group(1)).status_code == 302
    assert dave.get("/users/").location.endswith("/account/password")


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"username": "", "password": PASSWORD, "confirm": PASSWORD}, "username", "required"),
        ({"username": "x y", "password": PASSWORD, "confirm": PASSWORD}, "username", "letters"),
        ({"username": "root", "password": PASSWORD, "confirm": PASSWORD}, "username", "exists"),
        ({"username": "erin", "password": "short", "confirm": "short"}, "password", "At least"),
        ({"username": "erin", "password": PASSWORD, "confirm": "other"}, "confirm", "differ"),
    ],
)
def test_create_errors_are_shown_next_to_the_field(
    app: Flask, admin_client: FlaskClient, data: dict, field: str, message: str
) -> None:
    response = post(admin_client, "/users/", "/users/", role="viewer", **data)
    assert response.status_code == 200
    assert message in error_next_to(response.get_data(as_text=True), field)
    assert user_state(app, "erin") is None


def test_disable_ends_the_session_and_blocks_login(
    app: Flask, admin_client: FlaskClient, viewer_client: FlaskClient
) -> None:
    assert viewer_client.get("/").status_code == 200
    assert act_on(admin_client, app, "reader", "disable").status_code == 302
    assert user_state(app, "reader") == ("viewer", False, False)
    assert viewer_client.get("/").status_code == 302  # the open session is gone
    assert log_in(app.test_client(), "reader").status_code == 200  # refused

    assert act_on(admin_client, app, "reader", "enable").status_code == 302
    assert log_in(app.test_client(), "reader").status_code == 302
    assert viewer_client.get("/").status_code == 302  # the old cookie stays dead


def test_reset_ends_sessions_and_forces_a_change(
    app: Flask, admin_client: FlaskClient, viewer_client: FlaskClient
) -> None:
    response = act_on(
        admin_client, app, "reader", "password", password="temporary pw", confirm="temporary pw"
    )
    assert response.status_code == 302
    assert viewer_client.get("/").status_code == 302
    reader = app.test_client()
    assert log_in(reader, "reader").status_code == 200  # the old password is gone
    assert log_in(reader, "reader", "temporary pw").status_code == 302
    assert reader.get("/").location.endswith("/account/password")


def test_reset_errors_are_shown_next_to_the_field(
    app: Flask, admin_client: FlaskClient, viewer_client: FlaskClient
) -> None:
    response = act_on(admin_client, app, "reader", "password", password="a", confirm="a")
    assert "At least" in error_next_to(response.get_data(as_text=True), "password")
    assert viewer_client.get("/").status_code == 200  # nothing changed


def test_role_change(app: Flask, admin_client: FlaskClient, viewer_client: FlaskClient) -> None:
    assert viewer_client.get("/users/").status_code == 403
    assert act_on(admin_client, app, "reader", "role", role="admin").status_code == 302
    assert viewer_client.get("/users/").status_code == 200
    assert act_on(admin_client, app, "reader", "role", role="viewer").status_code == 302
    assert viewer_client.get("/users/").status_code == 403
    response = act_on(admin_client, app, "reader", "role", role="owner")
    assert "Not a valid choice" in error_next_to(response.get_data(as_text=True), "role")


def test_delete_needs_a_tick(app: Flask, admin_client: FlaskClient) -> None:
    make_user(app, "temp", "viewer")
    response = act_on(admin_client, app, "temp", "delete")
    assert "Tick the box" in error_next_to(response.get_data(as_text=True), "sure")
    assert act_on(admin_client, app, "temp", "delete", sure="y").status_code == 302
    assert user_state(app, "temp") is None


@pytest.mark.parametrize(
    ("action", "data", "message"),
    [
        ("disable", {}, "You cannot disable yourself"),
        ("role", {"role": "viewer"}, "You cannot demote yourself"),
        ("delete", {"sure": "y"}, "You cannot delete yourself"),
        ("password", {"password": PASSWORD, "confirm": PASSWORD}, "Change your own password"),
    ],
)
def test_admins_cannot_lock_themselves_out(
    app: Flask, admin_client: FlaskClient, action: str, data: dict, message: str
) -> None:
    response = act_on(admin_client, app, "root", action, **data)
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    assert user_state(app, "root") == ("admin", True, False)
    assert admin_client.get("/users/").status_code == 200


def test_the_last_active_admin_stays(app: Flask) -> None:
    """Another admin acting from a session that is about to end, or the CLI, still cannot leave
    the instance without an active admin."""
    make_user(app, "root", "admin")
    make_user(app, "reader", "viewer")
    with app.app_context():
        first = accounts.find_user(accounts.FIRST_ADMIN)
        root, reader = accounts.find_user("root"), accounts.find_user("reader")
        accounts.set_active(first, False, acting=root)  # two admins: fine
        for change in (
            lambda: accounts.set_active(root, False, acting=reader),
            lambda: accounts.set_role(root, "viewer", acting=reader),
            lambda: accounts.delete_user(root, acting=reader),
        ):
            with pytest.raises(accounts.AccountError, match="last active admin"):
                change()
        assert root.active and root.is_admin


def test_posts_without_csrf_are_refused(
    app: Flask, admin_client: FlaskClient, viewer_client: FlaskClient
) -> None:
    reader = user_id(app, "reader")
    assert admin_client.post(f"/users/{reader}/disable").status_code == 400
    assert admin_client.post(f"/users/{reader}/role", data={"role": "admin"}).status_code == 400
    response = admin_client.post(
        "/users/", data={"username": "x", "password": PASSWORD, "confirm": PASSWORD}
    )
    assert response.status_code == 400
    assert user_state(app, "reader") == ("viewer", True, False)
    assert user_state(app, "x") is None
    assert viewer_client.get("/").status_code == 200


def test_unknown_user_is_404(admin_client: FlaskClient) -> None:
    assert admin_client.get("/users/9999/").status_code == 404
