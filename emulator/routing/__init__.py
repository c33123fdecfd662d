"""Routing daemons in router namespaces: configs (`bird`, `frr`), their processes (`daemons` and
`bird_daemons`, `frr_daemons`, picked by `registry`), what they report (`state`, `events`), and
failover measurement (`failover`, `convergence`, `trace`)."""
