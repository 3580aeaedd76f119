"""The Stripe adapter: the gateway (pacing, retries, circuit breaker), Stripe's rate-limit model and
the reading of stripe-python's errors. The pure core sees it only through `core.ports`."""
