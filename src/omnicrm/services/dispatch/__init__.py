"""Dispatch: channel workers that claim queued messages, look once more, render, send and record."""
