"""report layer of caspian."""
