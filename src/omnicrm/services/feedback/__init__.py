"""Feedback: what comes back after a message left - provider webhooks, delivery receipts, tracked
opens and clicks, unsubscribes, inbox reads, operators' dispositions - normalised into the status
dictionary (domain/statuses.py), stored once, and turned into reactions the conversations follow."""
