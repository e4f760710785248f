"""Standard library only: what several processes must agree on. Imports nothing from the project."""
