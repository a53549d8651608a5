"""moto's server, answering one request at a time.

DynamoDB runs every TransactWriteItems serializably. moto does not: its threaded server applies
requests concurrently, and a transaction that fails restores a copy of the table taken when it
started, undoing whatever other requests wrote in between. Tests that race several processes
over one coordination table (leases, counters) would then see writes vanish that real DynamoDB
keeps. Serving one request at a time gives moto the isolation DynamoDB has; the arguments are
moto_server's own (-H HOST -p PORT).
"""

import threading

import moto.server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

_one_at_a_time = threading.Lock()
_dispatch = DomainDispatcherApplication.__call__


def _serialized(self, environ, start_response):
    with _one_at_a_time:
        # The whole response is produced under the lock, not just its first part.
        return list(_dispatch(self, environ, start_response))


DomainDispatcherApplication.__call__ = _serialized

if __name__ == "__main__":
    moto.server.main()
