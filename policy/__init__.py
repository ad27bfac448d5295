"""facegate.policy: privacy rules as code (consent, retention, data-subject rights)."""
