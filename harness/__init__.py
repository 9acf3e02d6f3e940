"""Test harness (not part of the installed package): a local SLURM cluster and a loopback Gemini server."""
