"""The dataflow simulator: a trained, exported HRN streamed through a model of an FPGA or a
many-core chip, per sample on its real route (docs/dataflow.md; `hrn-hw simulate`, `hrn-hw sweep`)."""
