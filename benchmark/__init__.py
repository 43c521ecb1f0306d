"""oodbench: how fine-tuning CLIP changes out-of-distribution detection."""

__version__ = "0.1.0"
