"""The SMTP side: the aiosmtpd handler and the listener thread."""
