"""``hugering market``: the exchange + strategies demonstration (``make demo``); see
``engine.market``."""
from __future__ import annotations

import sys

from engine.cli import (EXIT_RUNTIME, PROG, _add_json, _rate, _seconds, _term_as_interrupt,
                        command)


@command("market", "order flow -> matching engine -> ITCH/MoldUDP64 feed ring -> two strategy "
                   "processes, live (what 'make demo' runs)")
def _market(p):
    from engine import market as MK
    p.add_argument("--duration", type=_seconds, default=MK.DEFAULT_DURATION, metavar="S",
                   help=f"seconds of order flow (default {MK.DEFAULT_DURATION:g})")
    p.add_argument("--order-rate", type=_rate, default=MK.DEFAULT_ORDER_RATE, metavar="N",
                   help=f"order-entry messages per second, e.g. 50k (default "
                        f"{MK.DEFAULT_ORDER_RATE:,})")
    p.add_argument("--afxdp", action="store_true",
                   help="send the feed over a veth pair through AF_XDP (root, libxdp): "
                        "exchange -> AF_XDP TX -> veth -> XDP -> AF_XDP RX -> strategies")
    p.add_argument("--no-live", action="store_true",
                   help="no refreshing table (a line every 5 s instead)")
    _add_json(p)
    p.set_defaults(handler=_market_run)


def _market_run(a) -> int:
    from engine import market as MK
    try:
        # SIGTERM like Ctrl-C: the children stopped, the rings and the namespace removed
        with _term_as_interrupt():
            return MK.run_market(duration=a.duration, order_rate=a.order_rate,
                                 json_out=a.json, live=False if a.no_live else None,
                                 afxdp=a.afxdp)
    except MK.MarketError as e:
        print(f"{PROG}: error: market: {e}", file=sys.stderr)
        return EXIT_RUNTIME
