"""Fleet-admin side: provisioning, signed model bundles (TUF repository), rollout, status."""
