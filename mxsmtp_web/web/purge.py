"""(being written)"""

from flask_admin import Admin


def register(admin: Admin) -> None:
    return None
