"""Lightning + Hydra framework for convolutional-network ablation studies."""
