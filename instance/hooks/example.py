"""Example hooks for mxsmtp. Register them with, for example:

    mxsmtp settings set sender_hook example.py:check_sender
    mxsmtp settings set recipient_hook example.py:check_recipient
    mxsmtp settings set message_hook example.py:process_message

Each hook gets plain read-only values and returns True (accept), False (refuse with the usual
code) or a full reply line such as "550 5.1.1 No such ticket".

Answers to mail the application sent come back to a signed reply address (the application set
Reply-To to reply_address("ticket:42")): check_recipient refuses forged or expired ones, and
process_message finds the record in message.reply_ref.
"""

import logging

from mxsmtp_web.replies import looks_like_reply_address, read_reply_address

log = logging.getLogger("mxsmtp.hooks.example")

# The one domain this application receives ordinary mail for.
OUR_DOMAIN = "example.com"


def check_sender(sender, session):
    """Accept every sender, including the null sender "" that bounces use."""
    return True


def check_recipient(recipient, sender, session):
    """Reply addresses must carry a token we signed (any domain: the signature is the proof);
    other mail must be for our own domain."""
    if looks_like_reply_address(recipient):
        if read_reply_address(recipient) is None:
            return "550 5.1.1 Unknown or expired reply address"
        return True
    domain = recipient.rpartition("@")[2].lower()
    if domain != OUR_DOMAIN:
        return "550 5.1.1 We do not receive mail for that domain"
    return True


def process_message(message):
    """Keep every message. A real application files a reply on its record: message.reply_ref
    is the ref it put into reply_address() ("ticket:42"), message.reply_text what the person
    wrote, without the quoted history and signature."""
    if message.kind in ("auto_reply", "bounce"):
        # Out-of-office notes and bounces need no answer; a bounce names the failed address.
        if message.bounce is not None:
            log.info("bounce for %s: %s", message.bounce.recipient, message.bounce.status)
        return True
    if message.reply_ref is not None:
        kind, _, record_id = message.reply_ref.partition(":")
        log.info("new comment on %s %s: %r", kind, record_id, message.reply_text)
    return True
