"""Use cases: each opens a unit of work, calls the domain, persists, and records what it did."""
