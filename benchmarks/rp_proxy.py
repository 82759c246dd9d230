"""
A second baseline: Twisted's own C{twisted.web.proxy.ReverseProxyResource}.

It relays chunk by chunk, but speaks HTTP/1.0 with C{Connection: close} to the
backend (one new TCP connection per request), has no backpressure and does
not stop the backend when the client goes away; see section 3.9 of the
Twisted craft notes. It is here only as a yardstick for throughput.

Run::

    python benchmarks/rp_proxy.py --port 18911 --backend-port 18901
"""

from __future__ import annotations

import argparse

from twisted.internet import reactor
from twisted.web.proxy import ReverseProxyResource
from twisted.web.server import Request, Site

__all__ = ["main"]


class QuietSite(Site):
    """
    A L{Site} set up like llmux's: no access log, no start/stop chatter, no
    parsing of form bodies, so the comparison is between the proxies.
    """

    noisy = False

    def __init__(self, resource: ReverseProxyResource) -> None:
        super().__init__(resource, parsePOSTFormSubmission=False)

    def log(self, request: Request) -> None:
        pass


def main() -> None:
    """
    Serve C{ReverseProxyResource} in front of the backend until interrupted.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend-port", type=int, required=True)
    options = parser.parse_args()
    resource = ReverseProxyResource("127.0.0.1", options.backend_port, b"")
    reactor.listenTCP(options.port, QuietSite(resource), interface="127.0.0.1")
    print(f"ReverseProxyResource on {options.port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
