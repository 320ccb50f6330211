"""Example hooks for mxsmtp. Register them with, for example:

    mxsmtp settings set sender_hook example.py:check_sender
    mxsmtp settings set recipient_hook example.py:check_recipient
    mxsmtp settings set message_hook example.py:process_message

Each hook gets plain read-only values and returns True (accept), False (refuse with the usual
code) or a full reply line such as "550 5.1.1 No such ticket".
"""

import re

# The one domain this application receives mail for.
OUR_DOMAIN = "example.com"

# reply+TOKEN@example.com: a reply to a mail the application sent (TOKEN names the record).
REPLY_ADDRESS = re.compile(
    r"^reply\+(?P<token>[A-Za-z0-9_-]+)@" + re.escape(OUR_DOMAIN) + "$", re.IGNORECASE
)


def check_sender(sender, session):
    """Accept every sender, including the null sender "" that bounces use."""
    return True


def check_recipient(recipient, sender, session):
    """Accept our own domain only; reply addresses must carry a well-formed token."""
    domain = recipient.rpartition("@")[2].lower()
    if domain != OUR_DOMAIN:
        return "550 5.1.1 We do not receive mail for that domain"
    local = recipient.rpartition("@")[0]
    if local.lower().startswith("reply+") and not REPLY_ADDRESS.match(recipient):
        return "550 5.1.1 Unknown reply address"
    return True


def reply_token(recipients):
    """The token of the first reply address among the recipients, or None."""
    for recipient in recipients:
        match = REPLY_ADDRESS.match(recipient)
        if match:
            return match.group("token")
    return None


def process_message(message):
    """Keep every message; a real application would file it, e.g. on the record named by the
    reply token: reply_token(message.recipients)."""
    return True
