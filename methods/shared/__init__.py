"""Building blocks methods share (training loop, prompt learning, ...). Nothing here registers a method."""
