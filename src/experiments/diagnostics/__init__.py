"""Model diagnostics: layer summaries, parameter/FLOP counts and receptive-field analysis."""
