"""svc — call libsvc services from Python at shared-memory speed.

    import svc
    with svc.Client("shm://kv", timeout=2.0) as c:
        v = c.call("get", b"key")          # bytes in, bytes out
        mv = c.call_view("get", b"key")    # memoryview into the reply
        i = c.send("get", b"k1")           # calls in flight ...
        done = c.recv(timeout=1.0)         # ... (id, bytes) as they finish
        v = await c.acall("get", b"key")   # asyncio, on c.fileno()

Errors are svc.Error (.code, .name) and its subclasses: ConnectionRefused,
PeerGone, TimedOut, NoMethod, TooBig, HandlerError (.handler_code),
ProtocolError, WouldBlock, PermissionDenied. The GIL is released while a
call waits.
"""
import asyncio

from . import _svc
from ._svc import *  # noqa: F401,F403  the error classes and codes
from ._svc import Error, WouldBlock
from ._svc import __version__  # noqa: F401

__all__ = ["Client", "Error", "ConnectionRefused", "PeerGone", "TimedOut",
           "NoMethod", "TooBig", "HandlerError", "ProtocolError",
           "WouldBlock", "PermissionDenied"]


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
