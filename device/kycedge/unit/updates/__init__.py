"""The unit's side of signed model updates: TUF client, staging, self-test, atomic switch
and rollback, and the agent that drives them."""
