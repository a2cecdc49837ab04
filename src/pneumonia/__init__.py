"""Pneumonia detection in chest X-rays: data, split, models, evaluation.

The notebooks in ``notebooks/`` are the lessons; this package is the product they call.
"""

__version__ = "0.1.0"
