"""Dataset examples: the streaming top-K, receptive fields, the plan and the local engine, the Ray Data engine."""
