"""The Asterisk side: ARI HTTP client, the Stasis app, the PBX pool, outcome classification.

Knows nothing of campaigns: it turns ARI events into call events and hands them to a sink named in settings.
"""
