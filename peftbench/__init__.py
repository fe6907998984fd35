"""peftbench: benchmark parameter-efficient fine-tuning methods and recommend one.

Importing the package imports no torch: only the worker side (`peftbench.worker` and what it calls) does.
"""

__version__ = "0.1.0"
