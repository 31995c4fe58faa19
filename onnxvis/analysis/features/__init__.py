"""Feature visualisation by optimisation: the image a channel asks for (Lucent's recipe, in numpy over the gradient engine)."""
