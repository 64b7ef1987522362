"""Adapters for the ports: `<backend>_<port>.py`. Only `bootstrap.py` imports them."""
