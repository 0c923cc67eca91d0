"""Intake: validating and storing events, imports, opt-outs and the broker bridge wiring."""
