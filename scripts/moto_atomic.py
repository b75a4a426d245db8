"""moto's server, with each request applied atomically.

DynamoDB applies every write (an UpdateItem ADD, a TransactWriteItems) atomically; moto's
backends take no locks, and its threaded server can interleave two concurrent writes to one
item so that one of them is lost. The tests count events under concurrency, so they need the
real guarantee: this runs the same app, threaded for connections, one request at a time.
Usage: python3 moto_atomic.py HOST PORT
"""

import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def atomic(environ, start_response):
        with lock:
            # The whole answer is produced under the lock: moto builds it from live state.
            return list(app(environ, start_response))

    run_simple(host, port, atomic, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
