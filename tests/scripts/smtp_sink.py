#!/usr/bin/env python3
"""A loopback SMTP server for Latchkey's tests: every message it receives is saved.

    python3 tests/scripts/smtp_sink.py DIR PORT [HOST]

Listens on HOST:PORT (default 127.0.0.1) (aiosmtpd, from PyPI) and writes each message, exactly as
received, to DIR/<n>.eml (written under another name first and renamed, so a reader
never sees half a message). Prints "ready" on stdout once it accepts connections and
runs until it is killed.
"""

import itertools
import os
import sys
import threading
import time

from aiosmtpd.controller import Controller


class SaveToDir:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count()

    async def handle_DATA(self, server, session, envelope):
        name = "%d-%04d" % (time.time_ns(), next(self.counter))
        partial = os.path.join(self.directory, name + ".partial")
        with open(partial, "wb") as f:
            f.write(envelope.original_content)
        os.rename(partial, os.path.join(self.directory, name + ".eml"))
        return "250 Message accepted for delivery"


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: smtp_sink.py DIR PORT [HOST]")
    directory, port = sys.argv[1], int(sys.argv[2])
    host = sys.argv[3] if len(sys.argv) == 4 else "127.0.0.1"
    os.makedirs(directory, exist_ok=True)
    controller = Controller(SaveToDir(directory), hostname=host, port=port)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
