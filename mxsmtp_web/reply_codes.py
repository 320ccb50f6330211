"""Every SMTP reply we choose, in one place: RFC 5321 reply codes with RFC 3463 enhanced
status codes. Hooks may choose their own 4xx/5xx lines instead."""

OK = "250 2.0.0 OK"
SENDER_OK = "250 2.1.0 Sender OK"
RECIPIENT_OK = "250 2.1.5 Recipient OK"
ACCEPTED = "250 2.0.0 Message accepted"
PROBE_ACCEPTED = "250 2.0.0 Message accepted (verification probe, not stored)"

REFUSED_SENDER = "550 5.7.1 Sender refused"
REFUSED_RECIPIENT = "550 5.1.1 Recipient refused"
REFUSED_MESSAGE = "550 5.7.1 Message refused"
MALFORMED_ADDRESS = "553 5.1.3 Malformed address"
TOO_LARGE = "552 5.3.4 Message too big; the limit is {limit} bytes"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients; send the rest in another message"

TEMPORARY_FAILURE = "451 4.3.0 Temporary failure while checking this message; try again later"
STORAGE_UNAVAILABLE = "451 4.3.0 Cannot store the message right now; try again later"
STORAGE_FULL = "452 4.3.1 Insufficient system storage; try again later"
SHUTTING_DOWN = "421 4.3.2 Service shutting down; try again later"
