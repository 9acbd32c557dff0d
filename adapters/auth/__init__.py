"""Staff identity on the staff port: who the caller is, from a credential, never from the request.

- ``caller``: the typed ``Caller`` an authenticated call carries (a context variable per call).
- ``directory``: the site's staff directory (SQLite beside the event store, or a table in its
  PostgreSQL schema) with an append-only record of who changed whom.
- ``passwords`` (argon2), ``tokens`` (EdDSA JWTs signed by the site), ``oidc`` (the province's
  identity service), ``throttle`` (failed logins), ``authenticator`` (one credential -> one Caller),
  ``interceptor`` (the gRPC gate), ``servicer`` (AuthService: Login, WhoAmI).
"""
