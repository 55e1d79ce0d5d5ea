"""Accounts: /register, /login, /logout (POST), /account (password, API tokens, delete), and the
`flask --app wsgi users create|reset-password EMAIL` commands.

Forms are Flask-WTF forms (CSRF token included). Passwords are hashed by werkzeug (scrypt).
Logging in clears the old session first, so a session id planted before login is never reused.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import click
import sqlalchemy as sa
from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for
from flask.cli import AppGroup
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from app import db, outages

bp = Blueprint("auth", __name__)


class AccountsLoginManager(LoginManager):
    def unauthorized(self):
        """A page that needs the account while the database is down: 503 (app/outages.py), not the login page."""
        if "visage_database_down" in g:
            raise g.visage_database_down
        return super().unauthorized()


login_manager = AccountsLoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Log in to see this page."
login_manager.session_protection = "strong"

EMAIL_MAX = 254                  # the column's length
MIN_PASSWORD = 8
MAX_PASSWORD = 256
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@login_manager.user_loader
def _load_user(cookie_id: str):
    """While the database is down a logged-in visitor is served as anonymous (analyses keep working);
    pages that need the account answer 503 (AccountsLoginManager), not a redirect to a login that cannot work."""
    try:
        return db.load_user(cookie_id)
    except Exception as e:
        if not outages.database_unusable(e):
            raise
        g.visage_database_down = e
        db.db.session.rollback()
        return None


class Form(FlaskForm):
    """Every page form reads the submitted form only. Flask-WTF would also read a JSON body, and one that
    is not an object (a list, a number) raised inside every form on the page, the error page's too."""
    class Meta:
        def wrap_formdata(self, form, formdata):
            if formdata is _Auto:
                return request.form if request.form else None
            return formdata


def no_nul(_form, field):
    """PostgreSQL's text columns cannot hold a NUL character (a 500 there, while SQLite stored it)."""
    if field.data and "\x00" in field.data:
        raise ValidationError("This field cannot contain a NUL character.")


def valid_email(_form, field):
    if not EMAIL_PATTERN.match(field.data.strip()):
        raise ValidationError("Enter an email address like name@example.com.")
    if len(db.normalize_email(field.data)) > EMAIL_MAX:      # lower-casing can lengthen it ("İ" → "i̇")
        raise ValidationError(f"Use at most {EMAIL_MAX} characters.")


def password_field(label: str):
    return PasswordField(label, validators=[DataRequired(), Length(min=MIN_PASSWORD, max=MAX_PASSWORD,
                         message=f"Use {MIN_PASSWORD} to {MAX_PASSWORD} characters.")])


class LoginForm(Form):
    email = StringField("Email", validators=[DataRequired(), Length(max=EMAIL_MAX), no_nul])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD)])


class RegisterForm(Form):
    email = StringField("Email", validators=[DataRequired(), Length(max=EMAIL_MAX), no_nul, valid_email])
    password = password_field("Password")


class ChangePasswordForm(Form):
    current_password = PasswordField("Current password", validators=[DataRequired(), Length(max=MAX_PASSWORD)])
    new_password = password_field("New password")
    confirm = PasswordField("Repeat new password", validators=[EqualTo("new_password", "The passwords differ.")])


class DeleteAccountForm(Form):
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD)])


class TokenForm(Form):
    name = StringField("Token name", validators=[DataRequired(), Length(max=100), no_nul])


class PlainForm(Form):
    """A button-only form (log out, revoke, delete): just the CSRF token."""


def safe_next(target: str | None) -> str:
    """Only same-site paths: never redirect a login to another host."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target \
            and not urlsplit(target).netloc:
        return target
    return url_for("pages.index")


def start_session(user) -> None:
    session.clear()                       # rotate: nothing from the anonymous session survives
    login_user(user)


def create_user_once(form):
    """The new user, or None when the same email was registered between the check and the insert (a
    double-click: both submits passed the check during the password hash)."""
    try:
        return db.create_user(form.email.data, form.password.data)
    except sa.exc.IntegrityError:
        db.db.session.rollback()
        return None


@bp.route("/register", methods=["GET", "POST"])
def register():
    form = RegisterForm()
    if form.validate_on_submit():
        user = None if db.find_user(form.email.data) is not None else create_user_once(form)
        if user is None:
            form.email.errors.append("An account with this email already exists. Log in instead.")
        else:
            start_session(user)
            flash("Account created. You are logged in.")
            return redirect(url_for("history.index"))
    return render_template("auth/register.html", form=form), 400 if form.errors else 200


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        user = db.authenticate(form.email.data, form.password.data)
        if user is not None:
            start_session(user)
            return redirect(safe_next(request.args.get("next")))
        form.password.errors.append("Wrong email or password.")
    return render_template("auth/login.html", form=form), 400 if form.errors else 200


@bp.post("/logout")
def logout():
    if not PlainForm().validate_on_submit():
        abort(400)
    logout_user()
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("pages.index"))


def account_page(new_token: str | None = None, status: int = 200, **forms):
    forms.setdefault("password_form", ChangePasswordForm(prefix="pw"))
    forms.setdefault("delete_form", DeleteAccountForm(prefix="del"))
    forms.setdefault("token_form", TokenForm(prefix="tok"))
    return render_template("auth/account.html", tokens=db.user_tokens(current_user), new_token=new_token,
                           plain_form=PlainForm(), **forms), status


@bp.get("/account")
@login_required
def account():
    return account_page()


@bp.post("/account/password")
@login_required
def change_password():
    form = ChangePasswordForm(prefix="pw")
    if form.validate_on_submit():
        if db.check_password(current_user, form.current_password.data):
            db.set_password(current_user, form.new_password.data)
            start_session(current_user._get_current_object())   # the new session token goes in this cookie
            flash("Password changed. Other sessions are logged out.")
            return redirect(url_for("auth.account"))
        form.current_password.errors.append("Wrong password.")
    return account_page(password_form=form, status=400)


@bp.post("/account/delete")
@login_required
def delete_account():
    form = DeleteAccountForm(prefix="del")
    if form.validate_on_submit():
        if db.check_password(current_user, form.password.data):
            user = current_user._get_current_object()
            logout_user()
            db.delete_user(user)
            session.clear()
            flash("Your account and everything saved with it are deleted.")
            return redirect(url_for("pages.index"))
        form.password.errors.append("Wrong password.")
    return account_page(delete_form=form, status=400)


@bp.post("/account/tokens")
@login_required
def create_token():
    form = TokenForm(prefix="tok")
    if form.validate_on_submit():
        token, _row = db.create_token(current_user, form.name.data.strip())
        # Shown in this response only (never flashed: the session cookie is signed, not encrypted).
        return account_page(new_token=token, status=201)
    return account_page(token_form=form, status=400)


@bp.post(f"/account/tokens/<{db.ID_IN_URL}:token_id>/revoke")
@login_required
def revoke_token(token_id: int):
    if not PlainForm().validate_on_submit():
        abort(400)
    if not db.revoke_token(current_user, token_id):
        abort(404)
    flash("Token revoked.")
    return redirect(url_for("auth.account"))


@bp.app_context_processor
def header_forms():
    """The header's forms, on every page: Log out (a POST with a CSRF token) for a user, a compact
    login form for everyone else (left out on the login and register pages, which have their own)."""
    if current_user.is_authenticated:
        return {"logout_form": PlainForm(), "header_login_form": None}
    own_form = request.endpoint in ("auth.login", "auth.register")
    return {"logout_form": None, "header_login_form": None if own_form else LoginForm(formdata=None)}


# --- CLI ----------------------------------------------------------------------------------------

users_cli = AppGroup("users", help="Create users and reset passwords.")   # commands run in the app context


def _prompt_password() -> str:
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise click.ClickException(f"Use {MIN_PASSWORD} to {MAX_PASSWORD} characters.")
    return password


@users_cli.command("create")
@click.argument("email")
def create_user_command(email: str):
    """Create an account (asks for the password)."""
    if not EMAIL_PATTERN.match(email.strip()):
        raise click.ClickException("Not an email address.")
    if db.find_user(email) is not None:
        raise click.ClickException(f"{email} already has an account.")
    user = db.create_user(email, _prompt_password())
    click.echo(f"Created {user.email}.")


@users_cli.command("reset-password")
@click.argument("email")
def reset_password_command(email: str):
    """Set a new password (asks for it); the user's sessions end."""
    user = db.find_user(email)
    if user is None:
        raise click.ClickException(f"No account for {email}.")
    db.set_password(user, _prompt_password())
    click.echo(f"Password reset for {user.email}.")
