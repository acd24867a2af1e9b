"""weightlab: weight-space studies of neural networks, as a tested library.

The modules know nothing of Snakemake; the workflow's scripts call them.
"""

__version__ = "0.1.0"
