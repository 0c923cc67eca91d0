"""Channel adapters: one module per way a message leaves the bank, each behind `Channel.send`.

`base.py` holds the contract (`Outgoing` in, `SendResult` out) and what every vendor shares: its
limits as class data, enforced here and not in each adapter, and a rate limit. Adapters do I/O but
never touch the database: dispatch (services/dispatch) claims, re-checks, renders and records.
"""
