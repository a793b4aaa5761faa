"""How we reach machines: inventory (TOML -> dataclasses), ssh (parallel exec over reused connections), sync (rsync)."""
