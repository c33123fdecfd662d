"""Network layer: makes a validated topology real.

Namespaces, veth pairs, addresses, routes, sysctls and offloads, compiled
first into a plan of pure data (`plan`) and then sent to the kernel pipelined,
one rtnetlink socket per namespace (`rtnl`). Every object carries the run's
unique prefix and is recorded in the run's state directory so that teardown
removes exactly what was created (`state`, `teardown`); a process the run
starts is recorded by PID and start time and stopped only while both still
match (`processes`). `network.Network` holds the kernel objects of one run.
"""
