"""Microsoft Azure: `kind` is what is pure (the azure-arm source block, regions, tags, Jobs)."""
