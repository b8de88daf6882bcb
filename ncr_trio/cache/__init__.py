"""Image caches: registries that pull through to a source registry (the guide's "image cache").

    sources.py   the eight source types: what an image cache is, how its paths map to the source's
    credentials.py  how each type's access ID and secret become a Basic login (ECR: GetAuthorizationToken)
    upstream.py  the source's /v2 API as a client: challenge auth, tokens, egress checks, streamed blobs
    proxy.py     the pull-through: the guide's decision table, single-flight fetches streamed to every
                 waiting client while they are hashed, verified and committed, resumable partial fetches
"""
