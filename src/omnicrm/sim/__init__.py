"""Deterministic synthetic data: Ukrainian bank customers, their events and CRM interactions."""
