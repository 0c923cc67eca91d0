"""The call centre: operator tasks made from outbox rows of kind `task`, their queues, claims and
closures (a closure is a reaction bound to its task, stored through the intake)."""
