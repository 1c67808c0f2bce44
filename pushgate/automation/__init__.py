"""pushgate's own commits: image bumps and automatic reverts, pushed through its own gate."""
