"""Entry point for WSGI servers: `gunicorn wsgi:app` from the repository root."""
from app import create_app

app = create_app()
