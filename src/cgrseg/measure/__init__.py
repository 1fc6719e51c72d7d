"""Measurements of a model: parameters, FLOPs (two conventions) and throughput."""
