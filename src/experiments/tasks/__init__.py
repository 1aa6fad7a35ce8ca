"""LightningModules: network + loss + metrics + optimiser. A task knows nothing of which network it holds."""
