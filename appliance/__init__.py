"""Telephony appliance that runs beside Asterisk in one twistd process."""
