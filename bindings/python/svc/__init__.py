"""svc — call libsvc services from Python at shared-memory speed.

    import svc
    with svc.Client("shm://kv", timeout=2.0) as c:
        v = c.call("get", b"key")          # bytes in, bytes out
        mv = c.call_view("get", b"key")    # memoryview into the reply
        i = c.send("get", b"k1")           # calls in flight ...
        done = c.recv(timeout=1.0)         # ... (id, bytes) as they finish
        v = await c.acall("get", b"key")   # asyncio, on c.fileno()

    s = svc.Server("kv")
    @s.method("get")
    def get(req):                          # req: memoryview, valid in here
        return table[bytes(req)]           # bytes-like or None
    s.listen("shm://kv")
    s.run(workers=(1, 4))                  # forks workers, scales by CPU

Errors are svc.Error (.code, .name) and its subclasses: ConnectionRefused,
PeerGone, TimedOut, NoMethod, TooBig, HandlerError (.handler_code),
ProtocolError, WouldBlock, PermissionDenied, TLSError (tls://: the message
says why the handshake or a certificate check failed). The GIL is released while a
call waits; handlers run with it held, on libsvc's threads.
"""
import asyncio
import sys

from . import _svc
from ._svc import *  # noqa: F401,F403  the error classes and codes
from ._svc import EHANDLER, Error, HandlerError, WouldBlock
from ._svc import __version__  # noqa: F401

__all__ = ["Client", "Server", "Error", "ConnectionRefused", "PeerGone", "TimedOut",
           "NoMethod", "TooBig", "HandlerError", "ProtocolError",
           "WouldBlock", "PermissionDenied", "TLSError"]


class Client(_svc.Client):
    __doc__ = _svc.Client.__doc__

    async def acall(self, method, request=b""):
        """acall(method, request=b'') -> bytes, awaited in asyncio.

        Sends the call and waits for its reply on the client's fileno()
        with the running loop's add_reader; calls finishing meanwhile for
        other acall()s are handed to them."""
        loop = asyncio.get_running_loop()
        waiting = self.__dict__.setdefault("_svc_waiting", {})
        fd = self.fileno()
        while True:
            try:
                call_id = self.send(method, request)
                break
            except WouldBlock:  # the window (or shm's lanes) is full
                if not waiting:
                    raise
                # the first call in flight to finish frees room
                await asyncio.wait([f for f in waiting.values()],
                                   return_when=asyncio.FIRST_COMPLETED)
        fut = loop.create_future()
        waiting[call_id] = fut
        if len(waiting) == 1:
            loop.add_reader(fd, self._svc_drain, waiting)
        try:
            self._svc_drain(waiting)  # a fast server may have answered
            return await fut
        finally:
            waiting.pop(call_id, None)
            if not waiting:
                loop.remove_reader(fd)

    def _svc_drain(self, waiting):
        while waiting:
            try:
                done = self.recv(timeout=0)
            except Error as e:  # one call failed: e.call_id names it
                fut = waiting.get(getattr(e, "call_id", 0))
                if fut is None:
                    raise
                if not fut.done():
                    fut.set_exception(e)
                continue
            if done is None:
                return
            fut = waiting.get(done[0])
            if fut is not None and not fut.done():
                fut.set_result(done[1])


def _handler_error_init(self, *args):
    """HandlerError(code) in a handler answers the call with that positive
    application code (the caller's .handler_code)."""
    Error.__init__(self, *args)
    if args and type(args[0]) is int:
        self.handler_code = args[0]
        self.code, self.name = EHANDLER, "SVC_EHANDLER"


HandlerError.__init__ = _handler_error_init


class Server(_svc.Server):
    __doc__ = _svc.Server.__doc__

    def method(self, name=None):
        """@server.method("get") registers the function below it as the
        handler of method "get" (the function's own name without an
        argument) and returns it unchanged."""
        def register(fn):
            self.add_method(name or fn.__name__, fn)
            return fn
        if callable(name):  # @server.method without parentheses
            fn, name = name, None
            return register(fn)
        return register

    def run(self, workers=None, worker_init=None):
        def started():
            # Workers end with _exit(): what print() buffered would be
            # lost, so their output is written line by line.
            for stream in (sys.stdout, sys.stderr):
                if hasattr(stream, "reconfigure"):
                    stream.reconfigure(line_buffering=True)
            if worker_init is not None:
                worker_init()
        super().run(workers, started)

    run.__doc__ = _svc.Server.run.__doc__
