"""Profiles: customers, identity and merges, bulk profile writes, privacy and the timeline."""
