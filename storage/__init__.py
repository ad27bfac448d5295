"""facegate.storage: encrypted SQLite store (gallery, outbox, audit log)."""
