"""mbdpo_fast: a fast, faithful implementation of MBDPO (arXiv 2605.26282) on TD-MPC2's world model."""
__version__ = "0.1.0"
