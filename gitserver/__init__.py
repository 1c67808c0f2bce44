"""The gated Git remote: smart HTTP (dulwich + Flask under gunicorn), authenticated pushers and a
quarantined, atomic receive path that runs `pushgate.gate` before any ref moves."""
