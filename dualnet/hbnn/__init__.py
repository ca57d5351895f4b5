"""Hadamard binary (HBNN) layers and their bit-packed XOR/popcount kernel."""
