"""Campaigns: defining and launching campaigns."""
