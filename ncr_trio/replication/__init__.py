"""Replication between registries ("regions"): remote endpoints, policies, and the engine that copies
images (docs/replication.md). `model.py` is the vocabulary both sides share."""
