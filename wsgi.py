"""WSGI entry point for ``gunicorn -k gevent wsgi:app``.

Monkey-patching must come first: with ``--preload`` the app is imported before the worker patches, and
an ssl module imported unpatched made every HTTPS upstream call fail with RecursionError.
"""

from gevent import monkey

monkey.patch_all()

from app import create_app  # noqa: E402

app = create_app()
