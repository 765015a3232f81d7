"""The DPL Dassl trainers. Each file is self-contained: copy one into a CoOp-family fork's trainers/."""
