"""Fixed-point arithmetic shared by the golden model, the HLS renderer and the RTL generator.

Every value is an integer `q` read as q / 2**frac (docs/fixed_point.md). This package holds the
formats, the one conversion rule (round, then saturate) and the exact integer primitives.
"""
