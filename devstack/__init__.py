"""The development stack: the launcher of the default run, the embedded PostgreSQL and Redis, the
provider simulator and the `sim-*` providers that point at it. Product code never imports it
(`make lint`'s import contracts); only settings asks it for the embedded servers' URLs when
`DATABASE_URL`/`REDIS_URL` are unset."""
