"""Missed calls: tracking, policy, journal, rendering and the notifier service (SPEC §2)."""
