"""Kubernetes-facing code: names, labels, Job builders, result parsing (pure), and the client
module, the one place that writes to the cluster."""
