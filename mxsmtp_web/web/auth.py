"""Logging in and out, and changing one's own password (Flask-Login)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, flash, redirect, render_template, request, session, url_for
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from mxsmtp_web.store import accounts
from mxsmtp_web.store.models import User
from mxsmtp_web.web.listing import safe_next

blueprint = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.session_protection = "basic"


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=150)])
    password = PasswordField("Password", validators=[DataRequired()])
    remember = BooleanField("Remember me")


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired()])
    new = PasswordField(
        "New password",
        validators=[DataRequired(), Length(min=accounts.MIN_PASSWORD_LENGTH)],
    )
    confirm = PasswordField(
        "Repeat the new password", validators=[EqualTo("new", message="Passwords differ.")]
    )


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    app.register_blueprint(blueprint)
    app.before_request(_require_password_change)


@login_manager.user_loader
def _load_user(session_id: str) -> User | None:
    return accounts.user_from_session(session_id)


def _require_password_change() -> Any:
    """A user with a generated password must choose one before anything else."""
    if not current_user.is_authenticated or not current_user.must_change_password:
        return None
    if request.endpoint in {"auth.password", "auth.logout", "static"} or (
        request.endpoint or ""
    ).endswith(".static"):
        return None
    return redirect(url_for("auth.password"))


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm()
    address = request.remote_addr or "unknown"
    if form.validate_on_submit():
        if accounts.locked_out(address):
            form.password.errors.append(
                "Too many failed logins from your address; try again in 15 minutes."
            )
        else:
            user = accounts.authenticate(form.username.data, form.password.data)
            if user is None:
                accounts.record_failure(address)
                form.password.errors.append("Wrong username or password.")
            else:
                accounts.clear_failures(address)
                session.clear()  # nothing from before the login carries over
                login_user(user, remember=form.remember.data)
                return redirect(safe_next(request.args.get("next")))
    status = 429 if accounts.locked_out(address) and request.method == "POST" else 200
    return render_template("auth/login.html", form=form), status


@blueprint.route("/logout", methods=["POST"])
@login_required
def logout() -> Any:
    accounts.end_sessions(current_user)
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


@blueprint.route("/account/password", methods=["GET", "POST"])
@login_required
def password() -> Any:
    form = PasswordForm()
    if form.validate_on_submit():
        if not accounts.check_password(current_user, form.current.data):
            form.current.errors.append("This is not your current password.")
        else:
            user = current_user._get_current_object()
            accounts.set_password(user, form.new.data)
            login_user(user)  # a fresh session with the new token; other sessions end
            flash("Your password is changed; other sessions are logged out.", "success")
            return redirect(url_for("admin.index"))
    return render_template("auth/password.html", form=form)
