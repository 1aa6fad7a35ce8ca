"""Plain ``nn.Module`` networks. They know nothing of Hydra or Lightning: layers come in as factories."""
