"""Project tooling run by `make lint` (not part of the product)."""
