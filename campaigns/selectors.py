"""Reads: query functions named ``<entity>_<query>`` (e.g. ``lead_list_due``), always scoped by tenant.
Views, the API and tasks read through these rather than building querysets themselves.
"""
