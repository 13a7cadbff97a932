"""The lm-evaluation-harness tasks this project ships (YAML) and their scoring functions (utils.py)."""
