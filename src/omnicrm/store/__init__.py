"""Persistence: SQLAlchemy 2 Core tables, the unit of work, repositories and migrations."""
