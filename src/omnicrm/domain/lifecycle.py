"""Where a message (or a call-centre task) stands between the decision and the client.

    queued --> withdrawn                 (never left: a goal, an opt-out, a complaint took it back)
    queued --> sending --> sent --> delivered --> opened / clicked / replied
      ^          |          \\--> failed / bounced          (the provider's feedback)
      +-retried--+--> dead                            (permanent error, or attempts exhausted)

The dispatch worker (services/dispatch) moves a message from `queued`: `sending` inside the
transaction that sends it (never seen committed: a crash mid-send rolls back to `queued`), then
`sent` with the provider's id, or `dead` (a permanent error, or too many attempts: the dead-letter
state, with its reason). A transient error leaves it `queued` with its `attempts`, the error as its
`status_reason` and the retry time (back-off with jitter) as `available_at`, so whatever withdraws
queued messages (a goal, an opt-out) withdraws it too. Feedback (domain/statuses.py) moves a sent
message on: delivered, opened, clicked, replied, failed (the provider could not deliver it), bounced.
A withdrawn message never counts towards the frequency caps; every other does, for it was (or is
about to be) handed to a channel.
"""

from __future__ import annotations

QUEUED = "queued"
WITHDRAWN = "withdrawn"
SENDING = "sending"
SENT = "sent"
DEAD = "dead"
HANDED_OVER = ("sending", "sent", "delivered", "opened", "clicked", "replied", "failed", "bounced", "dead")
STATUSES = (QUEUED, WITHDRAWN, *HANDED_OVER)
