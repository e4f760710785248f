"""Writes: keyword-only functions named ``<entity>_<action>`` (e.g. ``attempt_claim``), one module per
entity. Views, serializers, tasks and admin call these; models, signals and serializers hold no logic.
"""
