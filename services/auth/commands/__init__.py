"""The auth service's writes, one module per aggregate.

    sessions     register, log in, refresh, log out, verify the e-mail, reset the password
    users        administrators' user management, and the first super-admin
    roles        roles, and seeding the permission catalogue and default roles
    api_keys     partner API keys, their publication to Redis, their verifier

and what they share: `credentials` (one-time, refresh and access tokens), `user_events`
(events several commands emit), `common` (audit log, rate limits, credential rules).

A command takes the unit of work the kit opened (and commits once the handler returns), the
`Caller`, and typed inputs (the generated request models); the `ServiceContext` only when it
needs more than the database — Redis (rate limits, token revocation, the API-key mirror) or
the signing keys. It returns the generated response model. Work that must follow the commit
(Redis) is registered with `uow.after_commit`.
"""
