"""`hrn-hw export`: checkpoint -> quantised IR -> golden vectors, HLS C++ project and report."""
