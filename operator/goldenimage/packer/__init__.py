"""Pure rendering of Packer HCL2 templates from a recipe, and fingerprinting."""
