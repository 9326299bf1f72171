"""kopf wiring: read -> gather -> plan (reconcile/) -> execute (kube/execute.py). Importing this
package registers every handler and index."""

from . import goldenimages, imagebuilds, imagechannels, indexes, startup

__all__ = ["goldenimages", "imagebuilds", "imagechannels", "indexes", "startup"]
