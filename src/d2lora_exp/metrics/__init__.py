"""Task metrics: pure functions from model outputs and references to scores, with no model or network."""
