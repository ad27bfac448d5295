"""A real MJPEG-over-HTTP server on 127.0.0.1 for camera tests.

It speaks ``multipart/x-mixed-replace; boundary=frame`` like an IP camera, one
JPEG part per frame at a fixed rate, from its own threads (the code under test
reads it through ``cv2.VideoCapture(url, cv2.CAP_FFMPEG)``). ``kill()`` closes
the listening socket and every live connection at once (a camera losing power
or a network cut), ``start()`` brings it back on the SAME port, and ``stall()``
keeps connections open but stops sending (a hung encoder).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import cv2
import numpy as np
import numpy.typing as npt


class MjpegServer:
    """Serve ``frames`` in a loop as an MJPEG stream at ``fps``."""

    def __init__(self, frames: list[npt.NDArray[np.uint8]], *, fps: float = 20.0) -> None:
        self._jpegs = []
        for f in frames:
            ok, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 85])
            assert ok
            self._jpegs.append(buf.tobytes())
        self._period = 1.0 / fps
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._running = threading.Event()
        self._stalled = threading.Event()
        self.port = 0
        self.connections = 0
        self.frames_sent = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        """Listen (again) on the same port and accept clients."""
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(8)
        self.port = ls.getsockname()[1]
        self._listener = ls
        self._running.set()
        t = threading.Thread(target=self._accept, args=(ls,), name="mjpeg-accept", daemon=True)
        t.start()
        self._threads.append(t)

    def kill(self) -> None:
        """Drop the listener and every live connection immediately."""
        self._running.clear()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = set(self._conns), set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        for t in self._threads:
            t.join(timeout=2)
        self._threads = [t for t in self._threads if t.is_alive()]

    def stall(self, stalled: bool = True) -> None:
        """Keep connections open but stop (or resume) sending frames."""
        if stalled:
            self._stalled.set()
        else:
            self._stalled.clear()

    def _accept(self, ls: socket.socket) -> None:
        while self._running.is_set():
            try:
                conn, _ = ls.accept()
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
                self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), name="mjpeg-client", daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            conn.recv(65536)  # the request; any GET is the stream
            conn.sendall(
                b"HTTP/1.0 200 OK\r\nCache-Control: no-cache\r\n"
                b"Content-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n"
            )
            i = 0
            while self._running.is_set():
                if self._stalled.is_set():
                    time.sleep(0.02)
                    continue
                jpg = self._jpegs[i % len(self._jpegs)]
                part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                conn.sendall(part + jpg + b"\r\n")
                self.frames_sent += 1
                i += 1
                time.sleep(self._period)
        except OSError:
            pass  # the client went away or kill() cut the connection
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()
