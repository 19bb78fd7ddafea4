"""Kopf operator that turns WhisperFineTune resources into KubeRay RayJobs. Never imports torch."""
