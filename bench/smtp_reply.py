"""smtp_reply.py - reading SMTP replies with asyncio, for the bench scripts."""


async def read_reply(reader):
    """One SMTP reply, all its lines; returns the code of the last line."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            return line[:3]
