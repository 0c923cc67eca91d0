"""Benchmarks behind `omnicrm bench ...`: they print figures, they do not assert."""
