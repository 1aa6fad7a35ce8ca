"""Pure analysis of a network, without Lightning: layer table, FLOPs, depth order, receptive fields."""
