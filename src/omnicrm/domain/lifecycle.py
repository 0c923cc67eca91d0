"""Where a message (or a call-centre task) stands between the decision and the client.

    queued --> withdrawn                 (never left: a goal, an opt-out, a complaint took it back)
    queued --> sending --> sent --> delivered --> opened / clicked / replied
                      \\--> failed (retried) --> dead (with its reason); bounced

Only `queued` and `withdrawn` are reached today; the channel workers (next issue) move a message on
from `queued`. A withdrawn message never counts towards the frequency caps; every other does, for
it was (or is about to be) handed to a channel.
"""

from __future__ import annotations

QUEUED = "queued"
WITHDRAWN = "withdrawn"
HANDED_OVER = ("sending", "sent", "delivered", "opened", "clicked", "replied", "failed", "bounced", "dead")
STATUSES = (QUEUED, WITHDRAWN, *HANDED_OVER)
