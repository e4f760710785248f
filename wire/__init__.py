"""What several processes must agree on, in one place: the AudioSocket codec, the call brief's schema and the
Redis names of a call, and the names of the Celery tasks the media worker sends.

Standard library only, and it imports nothing else from the project: the media worker (no Django), the PBX
simulator (nothing of the project but this package), the Stasis app and the Django apps all import it.
"""
