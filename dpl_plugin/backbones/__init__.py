"""Loading a CLIP family and describing it; the prompting wing builds on what this wing exposes."""
