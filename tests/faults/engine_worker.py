"""An engine consumer process for the fault tests: ``ConsumerEngine`` with ``stamp_handler``.

    python tests/faults/engine_worker.py '{"ring": NAME, "on_producer_gone": "stop", ...}'

Prints one JSON object per line: ``ready`` (joined, compiled), ``eos`` / ``back`` when the
engine reports end of stream or a producer again (with the time, CLOCK_REALTIME ns), and
``result`` (the engine's report, the handler's counters, the status).  Warnings go to stderr.
"""
from __future__ import annotations

import ctypes
import json
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE)]


def emit(event: str, **fields) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def main() -> int:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)          # die with the test (PR_SET_PDEATHSIG)
    a = json.loads(sys.argv[1])
    import stamp_handler as H
    from engine.cli import setup_logging
    from engine.loop import ConsumerEngine
    setup_logging()
    state = H.make_state(16)
    state[H.ST_CRASH_AT] = a.get("crash_at", -1)
    state[H.ST_CRASH_KIND] = a.get("crash_kind", 0)
    eng = ConsumerEngine(a["ring"], name=a.get("name", "faults"), handler="stamp_handler:on_burst",
                         idle="backoff", max_sleep_us=200, state=state)
    emit("ready", index=eng.index, cursor=eng.consumer.cursor, pid=__import__("os").getpid())
    seen = {"eos": None}

    def on_chunk(e):
        if e.end_of_stream != seen["eos"]:
            if e.end_of_stream is not None:
                emit("eos", message=e.end_of_stream, t_ns=time.time_ns(),
                     cursor=e.consumer.cursor)
            else:
                emit("back", t_ns=time.time_ns(), cursor=e.consumer.cursor)
            seen["eos"] = e.end_of_stream

    rep = eng.run(on_producer_gone=a.get("on_producer_gone", "report"),
                  producer_timeout=a.get("producer_timeout", 1.0), on_chunk=on_chunk,
                  handle_signals=False)
    on_chunk(eng)                # what the engine learnt in its last chunk (run checks it too)
    st = eng.state
    emit("result", t_ns=time.time_ns(), status=rep["status"], end_of_stream=rep["end_of_stream"],
         producer=rep["producer"], received=rep["received"], handled=rep["handled"],
         handler_errors=rep["handler_errors"], lost_line=rep["lost"],
         data=int(st[H.ST_DATA]), lost=int(st[H.ST_LOST]), duplicated=int(st[H.ST_DUP]),
         corrupt=int(st[H.ST_CORRUPT]), switches=int(st[H.ST_SWITCHES]),
         producer_id=int(st[H.ST_PROD]), first_seq=int(st[H.ST_FIRST_SEQ]),
         last_seq=int(st[H.ST_LAST_SEQ]), end=int(st[H.ST_END]), cursor=eng.consumer.cursor)
    eng.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
