"""The database: models and every query the web app makes, in one place.

SQLite in the instance folder by default; PostgreSQL (psycopg 3) when VISAGE_DATABASE_URL names one.
The schema is owned by the Alembic migrations in migrations/ (Flask-Migrate); `create_app`
applies pending ones at start-up under a lock, so several workers or servers starting together
migrate once. What is stored is only numbers about faces, never an uploaded image (docs/privacy.md).
"""
from __future__ import annotations

import fcntl
import hashlib
import secrets
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from flask_login import UserMixin
from flask_migrate import Migrate, upgrade
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from app import settings

MIGRATIONS_DIR = settings.REPO_ROOT / "migrations"
SOURCES = ("photo", "capture", "live", "api")
TOKEN_PREFIX = "vsg_"

# Named constraints, so later migrations can alter them on SQLite too (batch mode needs names).
metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s", "pk": "pk_%(table_name)s"})
db = SQLAlchemy(metadata=metadata)
migrate = Migrate()


def utcnow() -> datetime:
    """Naive UTC: SQLite has no time zones, so every timestamp is stored as UTC without one."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


# Row ids are INTEGER columns (32 bits on PostgreSQL): a larger id in a URL is a 404, never a query that
# overflows (a 500). Routes take ids as <ID_IN_URL:item_id>.
ID_IN_URL = "int(max=2147483647)"


class User(UserMixin, db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    # Part of the login cookie: replaced on password change, which logs out every other session.
    session_token: Mapped[str] = mapped_column(sa.String(64), default=lambda: secrets.token_hex(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    analyses = relationship("Analysis", back_populates="user", cascade="all, delete-orphan", passive_deletes=True)
    tokens = relationship("ApiToken", back_populates="user", cascade="all, delete-orphan", passive_deletes=True)

    def get_id(self) -> str:
        return f"{self.id}:{self.session_token}"


class Analysis(db.Model):
    """One saved analysis: the numbers of a photo, capture, API call or live session."""
    __tablename__ = "analyses"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    source: Mapped[str] = mapped_column(sa.String(16))
    detector: Mapped[str | None] = mapped_column(sa.String(16))
    width: Mapped[int | None]
    height: Mapped[int | None]
    faces: Mapped[list] = mapped_column(sa.JSON, default=list)       # the API's face objects
    models: Mapped[dict] = mapped_column(sa.JSON, default=dict)      # model name -> version
    timeline: Mapped[list | None] = mapped_column(sa.JSON)           # live: [{t, track, age, gender, emotion, p}]
    duration_s: Mapped[float | None]
    thumbnail: Mapped[bytes | None] = mapped_column(sa.LargeBinary)  # small JPEG, every face blurred
    # What was saved, once: the same result page's Save sent twice (a double-click, Back then Save) or
    # the same batch saved again is the same item (save_analysis). None: every save is new (the API).
    save_key: Mapped[str | None] = mapped_column(sa.String(64))

    user = relationship("User", back_populates="analyses")
    __table_args__ = (sa.UniqueConstraint("user_id", "save_key"),)

    def as_dict(self) -> dict:
        record = {"id": self.id, "created_at": self.created_at.isoformat(timespec="seconds") + "Z",
                  "source": self.source, "detector": self.detector,
                  "image": {"width": self.width, "height": self.height} if self.width else None,
                  "faces": self.faces, "models": self.models, "has_thumbnail": self.thumbnail is not None}
        if self.timeline is not None:
            record.update(duration_s=self.duration_s, timeline=self.timeline)
        return record


class ApiToken(db.Model):
    """A personal access token; only its SHA-256 is stored (the token itself is shown once)."""
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    hint: Mapped[str] = mapped_column(sa.String(16))                 # first characters, to tell tokens apart
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]

    user = relationship("User", back_populates="tokens")


@event.listens_for(Engine, "connect")
def _sqlite_foreign_keys(dbapi_connection, _record):
    """SQLite enforces ON DELETE CASCADE only with this pragma (deleting an account relies on it)."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA foreign_keys=ON")


# --- set-up -----------------------------------------------------------------------------------

def database_url(configured: str, instance_path: str) -> str:
    if not configured:
        return "sqlite:///" + str(Path(instance_path) / "visage.sqlite3")
    for plain in ("postgres://", "postgresql://"):        # psycopg 3 is the driver we ship
        if configured.startswith(plain):
            return "postgresql+psycopg://" + configured[len(plain):]
    return configured


def engine_options(url: str) -> dict:
    """Survive a database restart without restarting the app: every pooled connection is tested before use
    (pre-ping) and replaced if the server dropped it; connections are also renewed every 30 minutes, and a
    server that does not answer makes a request fail in 5 s (503, app/outages.py) instead of hanging."""
    options = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        options.update(pool_recycle=1800, connect_args={"connect_timeout": 5})
    return options


def init_app(app: Flask) -> None:
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url(app.config["VISAGE_DATABASE_URL"], app.instance_path)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(app.config["SQLALCHEMY_DATABASE_URI"]))
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))
    if app.config["VISAGE_DB_AUTO_UPGRADE"]:
        with app.app_context():
            upgrade_with_lock(app)


def upgrade_with_lock(app: Flask) -> None:
    """Apply pending migrations once even when several processes start at the same moment."""
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(7715001)"))
            try:
                upgrade(directory=str(MIGRATIONS_DIR))
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(7715001)"))
        return
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    with open(Path(app.instance_path) / "migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        upgrade(directory=str(MIGRATIONS_DIR))


# --- users ------------------------------------------------------------------------------------

def normalize_email(email: str) -> str:
    return email.strip().lower()


def find_user(email: str) -> User | None:
    return db.session.scalar(sa.select(User).where(User.email == normalize_email(email)))


def load_user(cookie_id: str) -> User | None:
    """Flask-Login's user loader: the cookie holds "<id>:<session_token>"."""
    user_id, _, token = cookie_id.partition(":")
    if not user_id.isdigit() or not token:
        return None
    user = db.session.get(User, int(user_id))
    return user if user is not None and secrets.compare_digest(user.session_token, token) else None


def create_user(email: str, password: str) -> User:
    user = User(email=normalize_email(email), password_hash=generate_password_hash(password))
    db.session.add(user)
    db.session.commit()
    return user


def authenticate(email: str, password: str) -> User | None:
    user = find_user(email)
    if user is None:
        check_password_hash(_DUMMY_HASH, password)    # same work whether or not the account exists
        return None
    return user if check_password_hash(user.password_hash, password) else None


_DUMMY_HASH = generate_password_hash(secrets.token_hex(8))


def check_password(user: User, password: str) -> bool:
    return check_password_hash(user.password_hash, password)


def set_password(user: User, password: str) -> None:
    user.password_hash = generate_password_hash(password)
    user.session_token = secrets.token_hex(16)        # other sessions of this account end
    db.session.commit()


def delete_user(user: User) -> None:
    """The account and every row it owns (analyses, tokens: ON DELETE CASCADE, and the ORM's cascade)."""
    db.session.delete(user)
    db.session.commit()


# --- saved analyses ---------------------------------------------------------------------------

def save_analysis(user: User, answer: dict, source: str, thumbnail: bytes | None = None,
                  timeline: list | None = None, duration_s: float | None = None,
                  save_key: str | None = None) -> Analysis:
    """Keep the numbers of an analysis answer (app/pipeline's dict) for `user`. With a save_key, a second
    save of the same thing returns the item the first one made (two at once included)."""
    saved = saved_item(user, save_key)
    if saved is not None:
        return saved
    image = answer.get("image") or {}
    item = Analysis(user_id=user.id, source=source, detector=answer.get("detector"),
                    width=image.get("width"), height=image.get("height"),
                    faces=answer.get("faces", []), models=answer.get("models", {}),
                    thumbnail=thumbnail, timeline=timeline, duration_s=duration_s, save_key=save_key)
    db.session.add(item)
    try:
        db.session.commit()
    except sa.exc.IntegrityError:
        db.session.rollback()
        saved = saved_item(user, save_key)
        if saved is None:
            raise
        return saved
    return item


def saved_item(user: User, save_key: str | None) -> Analysis | None:
    if save_key is None:
        return None
    return db.session.scalar(sa.select(Analysis).where(Analysis.user_id == user.id, Analysis.save_key == save_key))


def user_analyses(user: User, start: datetime | None = None, end: datetime | None = None) -> list[Analysis]:
    """The user's saved items, newest first; [start, end) when given."""
    query = sa.select(Analysis).where(Analysis.user_id == user.id)
    if start is not None:
        query = query.where(Analysis.created_at >= start)
    if end is not None:
        query = query.where(Analysis.created_at < end)
    return list(db.session.scalars(query.order_by(Analysis.created_at.desc(), Analysis.id.desc())))


def user_analysis(user: User, item_id: int) -> Analysis | None:
    """One of the user's items; another user's id is the same as a missing one (None → 404)."""
    return db.session.scalar(sa.select(Analysis).where(Analysis.id == item_id, Analysis.user_id == user.id))


def delete_analysis(item: Analysis) -> None:
    db.session.delete(item)
    db.session.commit()


# --- API tokens -------------------------------------------------------------------------------

def hash_token(token: str) -> str:
    """Tokens are 256 random bits, so a plain SHA-256 is enough (no password-style KDF needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(user: User, name: str) -> tuple[str, ApiToken]:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=name, token_hash=hash_token(token), hint=token[:10])
    db.session.add(row)
    db.session.commit()
    return token, row


def user_tokens(user: User) -> list[ApiToken]:
    return list(db.session.scalars(sa.select(ApiToken).where(ApiToken.user_id == user.id)
                                   .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))


def revoke_token(user: User, token_id: int) -> bool:
    row = db.session.scalar(sa.select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user.id))
    if row is None:
        return False
    db.session.delete(row)
    db.session.commit()
    return True


def user_for_token(token: str) -> User | None:
    row = db.session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None:
        return None
    row.last_used_at = utcnow()
    db.session.commit()
    return row.user


def owned_row_counts(user_id: int) -> dict[str, int]:
    """How many rows reference this user id (the account-deletion test and `users` CLI use it)."""
    count = lambda model, column: db.session.scalar(sa.select(sa.func.count()).select_from(model).where(column == user_id))  # noqa: E731
    return {"users": count(User, User.id), "analyses": count(Analysis, Analysis.user_id),
            "api_tokens": count(ApiToken, ApiToken.user_id)}

