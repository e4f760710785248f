"""The media worker; never imports Django."""
