"""Label-free explainability for unsupervised models (Crabbé & van der Schaar, ICML 2022)."""

__version__ = "0.1.0"
