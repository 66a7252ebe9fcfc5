"""The demo: ``./dev demo`` runs the lab, the appliance and a mailbox page; the
tour plays scripted calls through it and narrates what the appliance does."""
