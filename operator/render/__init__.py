"""Pure renderers: (spec, meta, settings) -> Kubernetes manifest dicts. No API calls here."""
