"""Offline datasets (TD-MPC2's chunk format) for multi-task pretraining."""
