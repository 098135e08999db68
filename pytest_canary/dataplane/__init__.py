"""Models of real data planes: given the applied objects, where does one request go?

Each module models one upstream data plane rule by rule (see UPSTREAM.md); each rule's
comment cites the upstream source it reproduces. Models are pure: no sockets, no threads.
"""
