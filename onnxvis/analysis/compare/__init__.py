"""Compare two models layer by layer: matching their layers, the errors of weights and activations, the run."""
