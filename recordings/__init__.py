"""Call recordings: the mixed bridge recordings the Stasis app makes, fetched from the PBX, stored where the
operator configures (``settings.STORAGES["recordings"]``), served to the tenant and deleted after the
campaign's retention."""
