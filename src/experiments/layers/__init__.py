"""Swappable layer factories: activation, pooling, normalisation and weight initialisation.

Models take these factories as constructor arguments (like timm's ``act_layer``) so that no model
names a concrete activation or pooling; the Hydra config groups choose them.
"""
