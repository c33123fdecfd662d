"""traffic layer of caspian."""
