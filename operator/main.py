"""Kopf entry point: importing this module registers the handlers, nothing else.

kopf run -m whisperft.operator.main --namespace NS      # or
whisperft operator run --namespace NS
"""

from whisperft.operator.handlers import lifecycle, startup, sync

__all__ = ["lifecycle", "startup", "sync"]
