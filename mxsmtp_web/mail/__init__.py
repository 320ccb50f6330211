"""Mail as values: MIME parsing (read tolerantly), transfer encodings, charsets, addresses,
TNEF, HTML sanitising, and what a message says about its conversation (kind, reply text,
bounce). Pure functions: no Flask, no database, no asyncio, nothing else of ours."""
