"""`dockerdoctor serve-registry` and `dockerdoctor registry ls/rm/gc`.

Modules: app (the OCI distribution-spec HTTP API), storage (driver interface and the
filesystem driver in registry:2's layout), server (sockets, workers, signals, access log),
tls, auth (htpasswd), gc (offline mark-and-sweep), client (talks to any registry), cli.
"""
