"""GoldenImage operator: builds, boot-tests, promotes and rolls back golden machine images."""

__version__ = "0.1.0"
