"""Local infrastructure for tests and the demo: a real control plane, a pod executor, cloud fakes. Not used in production."""
