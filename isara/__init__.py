"""isara: iterative self-alignment with retrieval-augmented in-context learning."""

__version__ = "0.1.0"
