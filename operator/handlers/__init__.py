"""Kopf handlers: thin wrappers that hand plain dicts to whisperft.operator.reconcile."""
