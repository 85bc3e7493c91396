"""Programs that embed multiraft: a range-splitting KV store and a trio host loop.

Installed with the library (``pip install .``) so that ``multiraft demo`` can run
the KV store; nothing in :mod:`multiraft` imports this package at module level.
"""
