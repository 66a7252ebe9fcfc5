from twisted.application.service import ServiceMaker

appliance = ServiceMaker(
    "appliance",
    "appliance.tap",
    "Telephony appliance beside Asterisk (callback, missed-call mail, forwarding).",
    "appliance",
)
