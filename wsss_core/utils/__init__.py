"""Small utilities shared by every stage: atomic writes, provenance, seeding, logging, progress, devices."""
