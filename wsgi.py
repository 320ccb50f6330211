"""The WSGI object for any server: `waitress-serve wsgi:app`, `gunicorn -w 4 wsgi:app`.

The SMTP listener is not started here, because a WSGI server may run several workers; run it
once per node with `mxsmtp smtp`, or use `mxsmtp serve` for both in one process. Every worker
reads the same boot configuration (MXSMTP_INSTANCE, MXSMTP_DATABASE_URL, MXSMTP_SECRET_KEY).
"""

import sys

from mxsmtp_web import create_app
from mxsmtp_web.store.database import DatabaseError

try:
    app = create_app()
except DatabaseError as error:  # one line for the admin, not a traceback per worker
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(1) from None
