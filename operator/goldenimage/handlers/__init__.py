"""Thin kopf wiring: parse the body, gather what is observed, plan (reconcile/), carry out the
plan's actions. Importing this package registers every handler."""

from . import goldenimages, imagebuilds, imagechannels, startup

__all__ = ["goldenimages", "imagebuilds", "imagechannels", "startup"]
