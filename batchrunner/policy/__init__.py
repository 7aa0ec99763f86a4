"""Pure policies: rate limits, retries, pricing, token estimates, the cost budget. No I/O, no clocks of
their own (they are given one), no imports from the engine, the store or the providers."""
