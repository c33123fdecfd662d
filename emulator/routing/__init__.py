"""Routing daemons in router namespaces: BIRD 2 configs (`bird`) and processes (`daemons`)."""
