#!/usr/bin/env python3
"""A desktop notification server for the tests (org.freedesktop.Notifications,
Desktop Notifications Specification 1.2) on the test's private session bus.

It behaves like the servers of the desktops: it announces the "actions"
and "body-markup" capabilities, numbers notices, lets replaces_id update a
live notice in place, and on CloseNotification emits NotificationClosed.
Every call is recorded, one JSON object per line, in LOG. The test plays the
user through org.evertoken.Test.Invoke(id, key): as a server does when an
action button is clicked, ActionInvoked(id, key) goes to the client that
created the notice (a unicast signal), then the notice closes (reason 2);
org.evertoken.Test.Dismiss(id) closes a notice as the user's dismissal does.

    notifysrv.py LOG READY_FILE
"""
import json
import sys

import dbus
import dbus.lowlevel
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

IFACE = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"
LOG, READY = sys.argv[1], sys.argv[2]

dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
bus = dbus.SessionBus()


def record(**kw):
    with open(LOG, "a") as f:
        f.write(json.dumps(kw) + "\n")


class Server(dbus.service.Object):
    def __init__(self):
        super().__init__(bus, PATH)
        self.next_id = 1
        self.live = {}  # id -> unique bus name of the client

    @dbus.service.method(IFACE, in_signature="", out_signature="as")
    def GetCapabilities(self):
        return ["actions", "body", "body-markup", "persistence"]

    @dbus.service.method(IFACE, in_signature="", out_signature="ssss")
    def GetServerInformation(self):
        return ("evertoken-test-notifications", "evertoken", "1", "1.2")

    @dbus.service.method(IFACE, in_signature="susssasa{sv}i", out_signature="u",
                         sender_keyword="sender")
    def Notify(self, app, replaces, icon, summary, body, actions, hints, timeout, sender=None):
        if replaces and int(replaces) in self.live:
            nid = int(replaces)
        else:
            nid = self.next_id
            self.next_id += 1
        self.live[nid] = sender
        record(call="Notify", id=nid, replaces=int(replaces), app=str(app),
               summary=str(summary), body=str(body), actions=[str(a) for a in actions],
               urgency=int(hints.get("urgency", 1)), timeout=int(timeout))
        return dbus.UInt32(nid)

    @dbus.service.method(IFACE, in_signature="u", out_signature="")
    def CloseNotification(self, nid):
        nid = int(nid)
        record(call="CloseNotification", id=nid, live=nid in self.live)
        if nid in self.live:
            del self.live[nid]
            self.NotificationClosed(dbus.UInt32(nid), dbus.UInt32(3))

    @dbus.service.signal(IFACE, signature="uu")
    def NotificationClosed(self, nid, reason):
        pass

    @dbus.service.method("org.evertoken.Test", in_signature="us", out_signature="")
    def Invoke(self, nid, key):
        nid = int(nid)
        dest = self.live.get(nid)
        if dest is None:
            raise dbus.exceptions.DBusException("no live notification %d" % nid)
        msg = dbus.lowlevel.SignalMessage(PATH, IFACE, "ActionInvoked")
        msg.set_destination(dest)
        msg.append(dbus.UInt32(nid), str(key), signature="us")
        bus.send_message(msg)
        record(call="ActionInvoked", id=nid, key=str(key))
        del self.live[nid]
        self.NotificationClosed(dbus.UInt32(nid), dbus.UInt32(2))


    @dbus.service.method("org.evertoken.Test", in_signature="u", out_signature="")
    def Dismiss(self, nid):
        """The user closes the notice (reason 2), no action chosen."""
        nid = int(nid)
        if nid not in self.live:
            raise dbus.exceptions.DBusException("no live notification %d" % nid)
        del self.live[nid]
        record(call="Dismiss", id=nid)
        self.NotificationClosed(dbus.UInt32(nid), dbus.UInt32(2))


name = dbus.service.BusName(IFACE, bus, do_not_queue=True)
server = Server()
with open(READY, "w") as f:
    f.write("ready\n")
GLib.MainLoop().run()
