"""slmtune: fine-tune, merge, quantize and evaluate small Phi-3 models as a DVC pipeline."""

__version__ = "0.1.0"
