"""mxsmtp: an inbound SMTP server that lives inside a Flask application.

`create_app()` binds configuration, the database and the CLI-facing parts; importing this
package starts nothing. The parts, and which may import which (checked in `make test`):
`mail` (pure parsing and values) < `store` (tables, migrations, queries) < `hooks`, `replies`,
`worker` < `processing` < `smtp`, `web` < `app` < `cli`.
"""

from mxsmtp_web.app import create_app
from mxsmtp_web.config import DATABASE_NAME, INSTANCE_ENV, PROJECT_ROOT, SECRET_KEY_NAME

__all__ = ["DATABASE_NAME", "INSTANCE_ENV", "PROJECT_ROOT", "SECRET_KEY_NAME", "create_app"]
