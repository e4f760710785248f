"""The domain: campaigns, contacts, leads, attempts, DNC, calling windows, retries, flows, SMS."""
