"""Running the matrix beyond one machine: the Ray executor (driver side) and its node side."""
