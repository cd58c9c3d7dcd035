"""deepafx-rt: neural networks that drive real LV2 plugins, offline and live."""

__version__ = "0.1.0"
