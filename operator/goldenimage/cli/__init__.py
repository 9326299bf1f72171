"""Command-line entry points: `goldenimage` and the kubectl plugin `kubectl golden`."""
