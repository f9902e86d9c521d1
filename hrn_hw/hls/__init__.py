"""HLS C++ backend: render a QuantModel into a Vitis HLS project and run its g++ C simulation."""
