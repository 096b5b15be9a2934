"""One router per concern; each is thin (validation, auth, one call into a service)."""
