#!/usr/bin/env python3
"""An echo bot on `chat daemon`'s JSON-RPC socket, standard library only.

It answers every message sent to the profile, in the conversation it came
from (a group message in the group), the unread backlog first.
Run `chat -P bot daemon` first, then: python3 echo_bot.py bot
"""
import json
import os
import socket
import sys


def profile_dir(name):
    """The profile's folder, found as `chat` finds it."""
    home = os.environ.get("E2EE_CHAT_HOME")
    if not home and os.environ.get("XDG_DATA_HOME"):
        home = os.path.join(os.environ["XDG_DATA_HOME"], "e2ee-chat")
    if not home:
        home = os.path.expanduser("~/.local/share/e2ee-chat")
    return os.path.join(home, "profiles", name)


profile = sys.argv[1] if len(sys.argv) > 1 else "bot"
sock = socket.socket(socket.AF_UNIX)
sock.connect(os.path.join(profile_dir(profile), "daemon.sock"))
f = sock.makefile("rw", encoding="utf-8")
ids = iter(range(1, 1 << 62))


def call(method, **params):
    request = {"jsonrpc": "2.0", "id": next(ids), "method": method, "params": params}
    f.write(json.dumps(request) + "\n")
    f.flush()


call("subscribe")  # unread messages first (the backlog), then as they come
for line in f:
    msg = json.loads(line)
    if "error" in msg:
        print("chat:", msg["error"]["message"], file=sys.stderr)
        continue
    if msg.get("method") != "event":
        continue
    ev = msg["params"]["event"]
    if ev.get("event") != "message" or ev.get("outgoing"):
        continue
    answer = "echo: " + (ev.get("body") or "(a file)")
    conversation = ev["conversation"]
    if conversation["type"] == "group":
        call("send", group=conversation["id"], text=answer, noWait=True)
    else:
        call("send", to=ev["fromName"], text=answer, noWait=True)
