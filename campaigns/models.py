"""Domain models (campaigns, contacts, leads, attempts, ...) are added by later issues."""
