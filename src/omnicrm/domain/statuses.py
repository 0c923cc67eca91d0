"""The status dictionary: every way a message's fate comes back, in one vocabulary.

Provider webhooks, Kannel's delivery receipts, the tracking pixel and links, the unsubscribe page,
the internet-bank inbox and operators' task dispositions are all normalised into these statuses.
Each status has a kind:

- `progress`: the message moved on its way (sent, delivered) - shown on the message, no reaction;
- `reaction`: the client did something (opened, clicked, replied) - a `message.reaction` on the
  timeline, which advances the conversation waiting on that message (issue 17's rules);
- `suppression`: the client or the network closed a door (unsubscribed, complained, bounced) - a
  reaction too, and it suppresses: consent withdrawn for the channel (services/intake/opt_out.py), or the
  address marked unreachable;
- `failure`: the provider could not deliver (failed) - shown on the message; the conversation's
  timer carries it on.

`rank` orders the lifecycle so that a late report never moves a message back: a `delivered` that
arrives after `clicked` is recorded on the timeline but the message stays `clicked`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["progress", "reaction", "suppression", "failure"]


@dataclass(frozen=True, slots=True)
class Status:
    name: str
    kind: Kind
    rank: int  # position in the lifecycle; a message only ever moves to a higher rank
    meaning: str

    @property
    def is_reaction(self) -> bool:
        """Written to the timeline as a `message.reaction` (and so seen by the conversation)."""
        return self.kind in ("reaction", "suppression", "failure") or self.name == "delivered"


STATUSES: Final[dict[str, Status]] = {
    s.name: s
    for s in (
        Status("sent", "progress", 30, "the provider accepted the message"),
        Status("delivered", "progress", 40, "the provider reports it reached the device or mailbox"),
        Status("failed", "failure", 35, "the provider could not deliver it (after accepting it)"),
        Status("bounced", "suppression", 45, "the address does not exist or refuses mail (hard bounce)"),
        Status("opened", "reaction", 50, "the client opened it (pixel, inbox read, push shown)"),
        Status("clicked", "reaction", 60, "the client followed a link in it"),
        Status("replied", "reaction", 70, "the client answered it (an SMS reply, an e-mail reply)"),
        Status("unsubscribed", "suppression", 80, "the client asked for no more of these on this channel"),
        Status("complained", "suppression", 90, "the client marked it as spam"),
    )
}
# The catalogue's `message.reaction` takes these (data/catalogue/events.yaml); `sent` stays internal.
REACTIONS: Final = frozenset(name for name in STATUSES if name != "sent")


def status(name: str) -> Status:
    """The status of that name; KeyError names the known ones."""
    try:
        return STATUSES[name]
    except KeyError:
        raise KeyError(f"unknown status {name!r}; known: {', '.join(STATUSES)}") from None


def moves_forward(current: str, new: str) -> bool:
    """Whether a message at `current` (a lifecycle status) should show `new` instead."""
    old = STATUSES.get(current)
    return old is None or STATUSES[new].rank > old.rank
