"""Refinement of CAM seeds into pseudo masks: dense CRF here, affinity methods (IRN, PSA) beside it."""
