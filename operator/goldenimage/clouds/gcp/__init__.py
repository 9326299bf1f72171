"""Google Cloud: `kind` is what is pure (the googlecompute source block, regions, labels, Jobs)."""
