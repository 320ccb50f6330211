"""The WSGI object for any server: `waitress-serve wsgi:app`, `gunicorn wsgi:app`.

The SMTP listener is not started here, because a WSGI server may run several workers; run it
once with `mxsmtp smtp`, or use `mxsmtp serve` for both in one process.
"""

from mxsmtp_web import create_app

app = create_app()
