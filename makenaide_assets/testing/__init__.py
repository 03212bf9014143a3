"""Test and benchmark helpers that ship with the package (a local Upbit-compatible server)."""
