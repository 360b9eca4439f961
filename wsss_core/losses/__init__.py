"""Every loss function of the package, one module per family: the methods' (cti, mctformer, swtformer,
vitpcm, single_stage for ToCo/MCC/AFA/ECA, afa, eca), the affinity networks' (affinity: IRN, PSA) and
pretraining's (dino). A loss reads tensors (or a network output by the fields it needs); this package
imports neither ``methods/`` nor ``stages/`` (tests/test_layers.py)."""
