"""MQTT command handlers (remote open, lockdown, enrolment requests); filled in by a later issue."""
