"""Local infrastructure for tests and the demo: a real control plane, a pod executor and cloud
fakes. Nothing in production imports it."""
