"""moto's server (as `moto_server -H host -p port`), handling one request at a time.

AWS applies each DynamoDB UpdateItem, conditional write and transaction atomically; moto checks a
condition and then writes in plain Python, so two threads can interleave between the two and both
succeed. Under a loaded test run that breaks the very guarantee our capacity counters rest on. One
lock around each request restores AWS's atomicity (moto is bound by the GIL anyway, so little
throughput is lost).
"""

import argparse
import os
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


def atomic(app):
    lock = threading.Lock()

    def handle(environ, start_response):
        with lock:
            # Drain the body inside the lock: the response is produced by then.
            return list(app(environ, start_response))

    return handle


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, atomic(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
