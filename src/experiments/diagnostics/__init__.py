"""Diagnostics callbacks: gradient flow, activation statistics, divergence guard, overfitting gap, model card."""
