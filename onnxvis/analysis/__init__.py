"""Analyses built on the engine, each a set of pure steps over its arrays: class activation maps,
dataset examples, statistics.
"""
