"""Loading datasets (hub or local files), checking their schema, and taking nested subsets."""
