"""Class activation maps: the arithmetic (maths), the runs on a model (runs), the metrics."""
