"""`dockerdoctor serve-registry` and `dockerdoctor registry ls/rm/gc`.

Modules: app (routing, auth, plumbing of the OCI distribution-spec HTTP API; its resources in blobs,
uploads, manifests, discovery; shared parts in common, base, manifest_doc; guard: timeouts, connection
cap, login limits; config: distribution's config.yml), storage (driver interface and the
filesystem driver in registry:2's layout), server (sockets, workers, signals, access log),
tls, auth (htpasswd), gc (offline mark-and-sweep), client (talks to any registry), cli.
"""
