"""One answer from several mailboxes' message hooks.

A message whose recipients are in several mailboxes is stored once, and each mailbox's message
hook decides for its own recipients. SMTP has one reply per message, so the answers combine
by one rule (README, "Mailboxes"), which loses nothing:
- any hook failed (raised, timed out, bad answer): 451 for the whole message, which stays
  stored as `hook error`; the sender's retry replaces it, and every hook sees it again;
- else, if no mailbox accepted it: the first refusal's reply, and the message is removed;
- else 250: the message stays in the mailboxes that accepted it and leaves those that refused
  (each refusal is recorded), and a mailbox with delete_after_process lets it go once its hook
  accepted; when no mailbox holds it any more, it is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

from mxsmtp_web.hooks import Decision
from mxsmtp_web.reply_codes import ACCEPTED, REFUSED_MESSAGE
from mxsmtp_web.store import storage
from mxsmtp_web.store.mailboxes import (
    DEFAULT,
    MailboxConfig,
    Placement,
    by_name,
    default_mailbox,
)
from mxsmtp_web.store.settings import Settings


@dataclass(frozen=True)
class MailboxHook:
    """One mailbox's message hook for one message; `spec` empty: the mailbox has none."""

    mailbox: MailboxConfig
    placement: Placement
    spec: str


@dataclass(frozen=True)
class Verdict:
    hook: MailboxHook
    decision: Decision | None  # None: there was no hook to ask, which accepts

    @property
    def accepted(self) -> bool:
        return self.decision is None or self.decision.accepted

    @property
    def hook_ran(self) -> bool:
        return self.decision is not None


def message_hooks(envelope: storage.Envelope, settings: Settings) -> list[MailboxHook]:
    """The mailboxes a message goes into, with the message hook each of them runs."""
    placements = envelope.placements or (
        Placement(DEFAULT, envelope.rcpt_tos[0] if envelope.rcpt_tos else ""),
    )
    hooks = []
    for placement in placements:
        mailbox = by_name(settings.mailboxes, placement.mailbox) or _removed(placement.mailbox)
        hooks.append(
            MailboxHook(mailbox, placement, mailbox.own("message_hook", settings.message_hook))
        )
    return hooks


def _removed(name: str) -> MailboxConfig:
    """A mailbox removed since the message was routed: the global settings apply."""
    return default_mailbox() if name == DEFAULT else MailboxConfig(name)


@dataclass(frozen=True)
class Settlement:
    """What the combined answer means for the sender and for the stored message."""

    verdicts: tuple[Verdict, ...]
    delete_after_process: bool  # the global setting, for mailboxes that do not set it

    @property
    def failed(self) -> Verdict | None:
        return next((v for v in self.verdicts if v.decision and v.decision.failed), None)

    @property
    def accepted(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.accepted)

    @property
    def refused(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if not v.accepted)

    @property
    def reply(self) -> str:
        """The reply for the sender when nothing failed."""
        if not self.accepted:
            chosen = next((v.decision.reply for v in self.refused if v.decision.reply), None)
            return chosen or REFUSED_MESSAGE
        chosen = next(
            (v.decision.reply for v in self.accepted if v.decision and v.decision.reply), None
        )
        return chosen or ACCEPTED

    @property
    def any_hook_accepted(self) -> bool:
        return any(v.hook_ran for v in self.accepted)

    def leaving(self) -> list[str]:
        """The mailboxes the message leaves: those that refused it, and those that keep
        nothing once their hook accepted it (delete_after_process)."""
        names = [v.hook.mailbox.name for v in self.refused]
        for verdict in self.accepted:
            own = verdict.hook.mailbox.delete_after_process
            if verdict.hook_ran and (self.delete_after_process if own is None else own):
                names.append(verdict.hook.mailbox.name)
        return names

    def kept_by(self) -> list[Verdict]:
        """The accepting mailboxes that keep the message."""
        leaving = set(self.leaving())
        return [v for v in self.accepted if v.hook.mailbox.name not in leaving]
