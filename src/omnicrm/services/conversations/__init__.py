"""Conversations: deciding, orchestration, facts, journeys, replay, the scenario library and the inbox."""
