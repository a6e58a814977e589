"""Bundled example problems (each a problem factory, ``raylanczos.examples.<module>:<function>``)."""
