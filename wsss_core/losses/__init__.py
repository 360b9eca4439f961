"""Loss functions shared by a method's training step, one module per method family."""
