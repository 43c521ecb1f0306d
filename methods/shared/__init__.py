"""Building blocks shared by several methods (negative-label mining, WordNet vocabulary)."""
